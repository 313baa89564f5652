//! Origin sequence rules, as pure functions.
//!
//! Each origin numbers its advisories 1, 2, 3, … *per scope*: one chain per
//! [`ChainId`] (origin, exact advisory scope), each advisory linked to the previous one of
//! its chain by digest (`prev`). Per scope, because a node must not learn the count or timing
//! of advisories it is not entitled to: with one chain per origin, a district would see the
//! numbers taken by advisories scoped to its siblings, and report each as missing.
//!
//! Given the last accepted `(seq, digest)` of a chain, a new advisory is the next link, a
//! duplicate, a jump ahead (a gap of missing advisories), an older one, or a fork (a second
//! advisory for a sequence number already taken, or one whose `prev` does not match):
//! evidence that the origin key signed two histories.

use std::fmt;

use crate::keys::Digest;
use crate::scope::Scope;

/// One sequence chain: the advisories of `origin` whose scope is exactly `scope`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainId {
    /// The origin id.
    pub origin: String,
    /// The exact scope of the chain's advisories (and of its heads).
    pub scope: Scope,
}

impl ChainId {
    /// The chain of `origin` for advisories scoped exactly `scope`.
    pub fn new(origin: impl Into<String>, scope: Scope) -> Self {
        Self { origin: origin.into(), scope }
    }
}

/// `origin@scope`, e.g. `mhlw@jp/13`: `@` occurs neither in ids nor in scopes.
impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.origin, self.scope)
    }
}

/// The last accepted advisory of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Its sequence number.
    pub seq: u64,
    /// Its digest.
    pub digest: Digest,
}

/// What to do with a new advisory of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqDecision {
    /// The next link (or the origin's first advisory, `seq` 1, when nothing of it is held):
    /// accept and advance the head.
    Accept,
    /// Already held: do not store or forward again.
    Duplicate,
    /// Ahead of the head (or, with no head, any `seq` above 1): advisories `from..=to` are
    /// missing. Accept this one and backfill.
    Gap {
        /// First missing sequence number.
        from: u64,
        /// Last missing sequence number.
        to: u64,
    },
    /// Older than the head and not held (a late backfill): accept without moving the head.
    Backfill,
    /// Conflicts with what is held at this sequence number: alarm and keep for audit.
    Fork {
        /// The contested sequence number.
        seq: u64,
    },
}

/// Classifies an advisory with sequence `seq`, link `prev` and digest `digest` against the
/// chain's `head`. `held_at_seq` is the digest already held at `seq`, if any (the caller
/// looks it up in its store; for `seq == head.seq` it is the head's own digest).
pub fn classify(
    head: Option<ChainHead>,
    seq: u64,
    prev: Option<Digest>,
    digest: Digest,
    held_at_seq: Option<Digest>,
) -> SeqDecision {
    if let Some(held) = held_at_seq {
        return if held == digest { SeqDecision::Duplicate } else { SeqDecision::Fork { seq } };
    }
    let Some(head) = head else {
        // Nothing of this chain held: everything before `seq` is missing. (Reporting it
        // makes the receiver catch up; seq 1 has nothing before it.)
        return if seq > 1 { SeqDecision::Gap { from: 1, to: seq - 1 } } else { SeqDecision::Accept };
    };
    if seq == head.seq {
        return if digest == head.digest { SeqDecision::Duplicate } else { SeqDecision::Fork { seq } };
    }
    if seq == head.seq + 1 {
        return if prev == Some(head.digest) {
            SeqDecision::Accept
        } else {
            SeqDecision::Fork { seq: head.seq }
        };
    }
    if seq > head.seq + 1 {
        return SeqDecision::Gap { from: head.seq + 1, to: seq - 1 };
    }
    SeqDecision::Backfill
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(label: &str) -> Digest {
        Digest::of(label.as_bytes())
    }

    fn head(seq: u64, label: &str) -> Option<ChainHead> {
        Some(ChainHead { seq, digest: d(label) })
    }

    #[test]
    fn first_advisory_is_accepted() {
        assert_eq!(classify(None, 1, None, d("a1"), None), SeqDecision::Accept);
    }

    #[test]
    fn first_seen_after_missing_ones_is_a_gap() {
        // Found by the simulator (seed 1): the origin's #1 was lost on the way, #2 arrived
        // first; accepting it silently left #1 missing without any report.
        assert_eq!(classify(None, 2, Some(d("a1")), d("a2"), None), SeqDecision::Gap { from: 1, to: 1 });
        assert_eq!(classify(None, 7, Some(d("a6")), d("a7"), None), SeqDecision::Gap { from: 1, to: 6 });
    }

    #[test]
    fn next_link_is_accepted() {
        assert_eq!(classify(head(1, "a1"), 2, Some(d("a1")), d("a2"), None), SeqDecision::Accept);
    }

    #[test]
    fn same_digest_is_duplicate() {
        assert_eq!(classify(head(2, "a2"), 2, Some(d("a1")), d("a2"), None), SeqDecision::Duplicate);
        assert_eq!(classify(head(3, "a3"), 1, None, d("a1"), Some(d("a1"))), SeqDecision::Duplicate);
    }

    #[test]
    fn jump_ahead_is_a_gap() {
        assert_eq!(
            classify(head(2, "a2"), 6, Some(d("a5")), d("a6"), None),
            SeqDecision::Gap { from: 3, to: 5 }
        );
    }

    #[test]
    fn second_history_is_a_fork() {
        assert_eq!(classify(head(2, "a2"), 2, Some(d("a1")), d("b2"), None), SeqDecision::Fork { seq: 2 });
        assert_eq!(classify(head(2, "a2"), 3, Some(d("b2")), d("a3"), None), SeqDecision::Fork { seq: 2 });
        assert_eq!(
            classify(head(5, "a5"), 3, Some(d("a2")), d("b3"), Some(d("a3"))),
            SeqDecision::Fork { seq: 3 }
        );
    }

    #[test]
    fn older_unknown_is_backfill() {
        assert_eq!(classify(head(5, "a5"), 3, Some(d("a2")), d("a3"), None), SeqDecision::Backfill);
    }
}
