//! What a running node says about what happens: one log line per machine [`Event`], at a
//! level that matches how much an operator should care (ERROR for forks (of an origin's chain
//! or of a parent's transparency log), frozen feeds and
//! held input; WARN for refusals and gaps; INFO for what flows; DEBUG for the routine).

use tracing::{debug, error, info, warn};

use kairan_protocol::sequence::SeqDecision;

use crate::machine::Event;

/// Logs `event` of node `node`.
pub fn log_event(node: &str, event: &Event) {
    match event {
        Event::Accepted(accepted) => {
            let record = &accepted.record;
            info!(
                node = %node,
                digest = %record.digest,
                origin = %record.origin,
                seq = record.seq,
                relay_seq = record.relay_seq,
                scope = %record.scope,
                "accepted"
            );
            if accepted.sequence == SeqDecision::Backfill {
                info!(node = %node, origin = %record.origin, seq = record.seq, "backfilled");
            }
        }
        Event::Duplicate { digest } => debug!(node = %node, %digest, "duplicate dropped"),
        Event::Rejected(rejection) => warn!(
            node = %node,
            digest = %rejection.claimed_digest.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            reason = %rejection.code,
            source = %rejection.source,
            "rejected: {}",
            rejection.message
        ),
        Event::Fork(fork) => error!(
            node = %node,
            digest = %fork.digest,
            origin = %fork.origin,
            scope = %fork.scope,
            seq = fork.seq,
            "FORK: origin signed two advisories for one sequence number of a chain; kept for audit, not forwarded"
        ),
        Event::Held { reason } => {
            error!(node = %node, "not processed, left unacknowledged for redelivery: {reason}");
        }
        Event::Deferred { code, message } => warn!(
            node = %node,
            reason = %code,
            "held: not valid yet by this node's clock (is it behind?); tried again for up to {} s: {message}",
            crate::machine::deferred::HOLD_MS / 1000
        ),
        Event::Gap { chain, from, to, from_head: false } => {
            warn!(node = %node, %chain, from, to, "gap in origin chain: advisories missing; catching up");
        }
        Event::Gap { chain, from, to, from_head: true } => warn!(
            node = %node,
            %chain,
            from,
            to,
            "GAP: the origin's signed head names advisories not held here; catching up"
        ),
        Event::HeadNewer { chain, seq, .. } => debug!(node = %node, %chain, seq, "newer signed head"),
        Event::HeadRefused(rejection) => warn!(
            node = %node,
            reason = %rejection.code,
            source = %rejection.source,
            "head refused: {}",
            rejection.message
        ),
        Event::FeedFrozen { chain, seq, expired_at } => error!(
            node = %node,
            %chain,
            seq,
            expired_at = %expired_at,
            "FEED FROZEN: no fresh signed head of this origin's chain"
        ),
        Event::TrustUpdated { revoked_keys, rotations } => {
            info!(node = %node, revoked_keys, rotations, "trust bundle updated");
        }
        Event::TrustRefused { code, message } => {
            warn!(node = %node, reason = code, "trust bundle refused, nothing changed: {message}");
        }
        Event::TrustStoreWarning(text) => warn!(node = %node, "{text}"),
        Event::CatchUpPage { received, cursor, parent_latest } => {
            if *received > 0 || cursor < parent_latest {
                info!(node = %node, received, caught_up_to = cursor, parent_latest, "catch-up page");
            } else {
                debug!(node = %node, caught_up_to = cursor, "catch-up: nothing new");
            }
        }
        Event::ParentBehind { cursor, parent_latest } => warn!(
            node = %node,
            cursor,
            parent_latest,
            "the parent's log ends before this node's catch-up cursor (it lost data or was restored): catching up from its end"
        ),
        Event::StalePage { after, cursor } => {
            debug!(node = %node, after, cursor, "stale catch-up page ignored");
        }
        Event::PageRefused(text) => warn!(node = %node, "catch-up response refused: {text}"),
        Event::SyncAnswered { child, after, sent, scanned_upto, last_relay_seq } => {
            debug!(node = %node, %child, after, sent, scanned_upto, last_relay_seq, "catch-up answered");
        }
        Event::SyncDropped { child, reason } => {
            if reason.starts_with("repeats") {
                debug!(node = %node, %child, "catch-up request dropped: {reason}");
            } else {
                warn!(node = %node, %child, "catch-up request dropped: {reason}");
            }
        }
        Event::Throttling { source } => warn!(
            node = %node,
            %source,
            "refusing input faster than {}/s: throttling this input",
            crate::machine::REFUSALS_PER_SEC
        ),
        Event::Forwarded { digest, relay_seq, topic } => {
            info!(node = %node, %digest, relay_seq, %topic, "forwarded");
        }
        Event::StoreAnomaly(text) => error!(node = %node, "store anomaly: {text}"),
        Event::CheckpointSigned { size, root } => {
            debug!(node = %node, size, root = %root, "checkpoint of the transparency log signed");
        }
        Event::ParentLogVerified { size } => {
            debug!(node = %node, size, "the parent's transparency log verified consistent");
        }
        Event::ParentLogStale { held, shown } => warn!(
            node = %node,
            held,
            shown,
            "the parent showed an older checkpoint of its log than one it signed before (replayed, or it lost data)"
        ),
        Event::InclusionVerified { count } => {
            debug!(node = %node, count, "deliveries proved included in the parent's transparency log");
        }
        Event::ParentLogRefused(text) => warn!(node = %node, "the parent's checkpoint refused: {text}"),
        Event::LogFork(record) => error!(
            node = %node,
            parent = %record.parent,
            held = %record.held,
            shown = %record.shown,
            "LOG FORK: the parent showed two checkpoints of its transparency log that cannot both be true ({}); both kept as evidence",
            record.reason
        ),
    }
}
