//! One advisory's provenance, as evidence an auditor checks offline with only the trust
//! anchors (`kairan audit advisory`, `audit bundle`, `audit verify-bundle`).
//!
//! From the stores of one or more nodes (read from their segment files only, so a node may
//! run meanwhile, or the stores may be copies) [`collect`] takes the advisory's delivery as
//! each node stored it and, from every relay's own transparency log, the relay's latest
//! signed checkpoint that covers it and the RFC 9162 inclusion proof of that delivery in it
//! (leaf `relay_seq − 1` = the exact stored bytes, `docs/protocol.md` §18.12). The result,
//! an [`AuditBundle`], is plain JSON that names nothing outside itself.
//!
//! [`verify_bundle`] trusts nothing in it but the anchors: each delivery is verified (origin
//! signature and chain to a root, every hop), all of them must be the same advisory, and each
//! checkpoint must be signed by the relay key that the verified delivery certifies for that
//! node (its last hop), under that node's log name, with the inclusion proof recomputing the
//! checkpoint's root from the delivery bytes. Clinics keep a log but sign no checkpoint, so
//! a clinic's store contributes its delivery (the most downstream copy) and no log evidence.
//!
//! Coverage (which clinics received and opened an advisory) needs signed receipts from the
//! clinics, which are not built yet (issue 9); a report says so instead of guessing.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kairan_protocol::note::{NoteVerifier, SignatureType, open_checkpoint};
use kairan_protocol::tlog::{Hash, MemoryHashes, leaf_hash, prove_inclusion, verify_inclusion};
use kairan_protocol::{Delivery, Digest, RevocationSet, Timestamp, TrustAnchors, Verified, VerifyContext};

use crate::machine::tlog::log_origin;
use crate::progress::Progress;
use crate::provenance::Provenance;
use crate::store::audit::records;
use crate::store::log_record::LogRecord;
use crate::store::{CHECKPOINT_BLOB, StoredDelivery};

/// The `format` of a bundle this version writes and reads.
pub const BUNDLE_FORMAT: &str = "kairan-audit-bundle-v1";

/// Everything needed to check one advisory's provenance offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditBundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The advisory's digest.
    pub advisory: String,
    /// The most downstream copy found (the one with the most hops): its exact stored JSON.
    pub delivery: String,
    /// Evidence from each relay's log, in path order.
    pub logs: Vec<LogEvidence>,
}

/// A relay's evidence that it logged the advisory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEvidence {
    /// The relay's node id.
    pub node: String,
    /// The delivery's `relay_seq` in that relay's output log (leaf `relay_seq − 1`).
    pub relay_seq: u64,
    /// The delivery exactly as the relay stored and forwarded it (its own hop last).
    pub delivery: String,
    /// The relay's signed checkpoint (a signed note, `docs/protocol.md` §18.7).
    pub checkpoint: String,
    /// The inclusion proof of the leaf in the checkpoint's tree, hashes in base64.
    pub proof: Vec<String>,
}

/// Why a bundle could not be made or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A store could not be read.
    #[error("{path}: {reason}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No store holds the advisory, or an id names several.
    #[error("{0}")]
    NotFound(String),
    /// The bundle is not a bundle of this version.
    #[error("not an audit bundle: {0}")]
    Malformed(String),
    /// A piece of evidence does not verify.
    #[error("{what}: {reason}")]
    Refused {
        /// Which piece.
        what: String,
        /// The reason code (`docs/protocol.md` §13) or the failed check.
        reason: String,
    },
}

/// What [`verify_bundle`] established.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// The advisory's verified provenance (the most downstream copy).
    pub provenance: Provenance,
    /// Each relay's log inclusion, verified.
    pub logs: Vec<LogInclusion>,
    /// Relays on the path without log evidence in the bundle.
    pub unlogged: Vec<String>,
    /// Coverage: not available until clinics send signed receipts.
    pub coverage: Option<String>,
}

impl AuditReport {
    /// The report as `kairan audit advisory` prints it.
    pub fn render_text(&self) -> String {
        let provenance = &self.provenance;
        let mut out = format!("VERIFIED  advisory {} ({})\n", provenance.id, provenance.digest);
        out.push_str(&format!(
            "  {} {}  scope {}  {}\n",
            provenance.tlp, provenance.severity, provenance.scope, provenance.title
        ));
        out.push_str(&format!(
            "  written by {} (key {}), seq {}, issued {}\n",
            provenance.origin, provenance.origin_keyid, provenance.seq, provenance.issued_at
        ));
        for link in &provenance.origin_chain {
            out.push_str(&format!(
                "    certified: {} [{}] by {}\n",
                link.subject,
                link.roles.join(","),
                link.issued_by
            ));
        }
        out.push_str(&format!("  path: {}\n", provenance.path()));
        for hop in &provenance.hops {
            let inclusion = match self.logs.iter().find(|log| log.node == hop.relay) {
                Some(log) => format!(
                    "in its log: leaf {} of checkpoint size {} root {}, proof verified",
                    log.index, log.size, log.root
                ),
                None => "no log evidence in this bundle".into(),
            };
            out.push_str(&format!(
                "    {}  received {}  forwarded {}  relay_seq {}  {inclusion}\n",
                hop.relay, hop.received_at, hop.forwarded_at, hop.relay_seq
            ));
        }
        if let Some(coverage) = &self.coverage {
            out.push_str(&format!("  coverage: {coverage}\n"));
        }
        out
    }
}

/// A verified inclusion of the advisory in a relay's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogInclusion {
    /// The relay.
    pub node: String,
    /// Leaf index (`relay_seq − 1`).
    pub index: u64,
    /// The checkpoint's tree size.
    pub size: u64,
    /// The checkpoint's root (base64).
    pub root: String,
}

/// A verification time at which a delivery's statements are all in the past: its latest hop
/// time, or when it was stored, whichever is later. (Certificates may have expired since;
/// what matters is that they were valid when the advisory travelled.)
fn verification_time(delivery: &Delivery, stored_at: Option<Timestamp>) -> Timestamp {
    // Unverified here: a time read from a forged hop only changes when the real check runs.
    let hop_times = delivery.hops.iter().filter_map(|envelope| {
        let hop: kairan_protocol::Hop = serde_json::from_slice(&envelope.payload).ok()?;
        Some(hop.forwarded_at.max(hop.received_at))
    });
    hop_times.chain(stored_at).max().unwrap_or_else(|| Timestamp::from_unix_ms(0))
}

fn verify_copy(
    json: &str,
    stored_at: Option<Timestamp>,
    anchors: &TrustAnchors,
) -> Result<Verified<Delivery>, String> {
    let delivery = Delivery::from_json(json.as_bytes()).map_err(|e| e.code().to_owned())?;
    let now = verification_time(&delivery, stored_at);
    let revocations = RevocationSet::default();
    kairan_protocol::verify_parsed(delivery, VerifyContext { anchors, revocations: &revocations, now })
        .map_err(|e| format!("{}: {e}", e.code()))
}

/// The stored deliveries and own checkpoints of one store.
struct StoreContents {
    deliveries: Vec<StoredDelivery>,
    checkpoints: Vec<Vec<u8>>,
}

fn read_store(dir: &Path) -> Result<StoreContents, AuditError> {
    let failed = |reason: String| AuditError::Store { path: dir.to_owned(), reason };
    if !crate::store::disk_store::segments_dir(dir).is_dir() {
        return Err(failed("no segments/ directory: not a node's store".into()));
    }
    let mut contents = StoreContents { deliveries: Vec::new(), checkpoints: Vec::new() };
    for record in records(dir).map_err(|e| failed(e.to_string()))? {
        match record {
            LogRecord::Delivery(delivery) => contents.deliveries.push(delivery),
            LogRecord::Blob(name, value) if name == CHECKPOINT_BLOB => contents.checkpoints.push(value),
            _ => {}
        }
    }
    contents.deliveries.sort_by_key(|delivery| delivery.relay_seq);
    Ok(contents)
}

/// Which stored delivery `selector` (a digest, `sha256:…`, or an advisory id) names in the
/// given stores; an id is matched on verified copies only.
fn resolve(
    stores: &[StoreContents],
    selector: &str,
    anchors: &TrustAnchors,
    progress: &mut Progress,
) -> Result<Digest, AuditError> {
    if let Ok(digest) = Digest::parse(selector) {
        return Ok(digest);
    }
    progress.phase(&format!("finding {selector:?}: verifying every stored advisory"));
    let mut found: Vec<Digest> = Vec::new();
    for delivery in stores.iter().flat_map(|store| &store.deliveries) {
        if found.contains(&delivery.digest) {
            continue;
        }
        let json = String::from_utf8_lossy(&delivery.delivery);
        if let Ok(verified) = verify_copy(&json, Some(delivery.received_at), anchors)
            && verified.facts().advisory.id == selector
        {
            found.push(delivery.digest);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(AuditError::NotFound(format!("no store holds an advisory with id or digest {selector:?}"))),
        many => Err(AuditError::NotFound(format!(
            "id {selector:?} names {} advisories ({}): give the digest",
            many.len(),
            many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The evidence of `store`'s own log for `stored` (its latest checkpoint covering it), if the
/// node signs checkpoints (relays do, clinics do not).
fn log_evidence(store: &StoreContents, stored: &StoredDelivery) -> Result<Option<LogEvidence>, String> {
    let index = stored.relay_seq.checked_sub(1).ok_or("relay_seq 0")?;
    let mut tree = MemoryHashes::new();
    for delivery in &store.deliveries {
        if delivery.relay_seq != tree.size() + 1 {
            break;
        }
        tree.append(leaf_hash(&delivery.delivery)).map_err(|e| e.to_string())?;
    }
    let covering = store.checkpoints.iter().rev().find_map(|note| {
        let parsed = kairan_protocol::note::Note::parse(note).ok()?;
        let checkpoint = kairan_protocol::note::Checkpoint::parse(parsed.text()).ok()?;
        (checkpoint.size > index && checkpoint.size <= tree.size()).then_some((note, checkpoint))
    });
    let Some((note, checkpoint)) = covering else { return Ok(None) };
    let node = checkpoint.origin.rsplit('/').next().unwrap_or_default().to_owned();
    let proof = prove_inclusion(&tree, index, checkpoint.size).map_err(|e| e.to_string())?;
    Ok(Some(LogEvidence {
        node,
        relay_seq: stored.relay_seq,
        delivery: String::from_utf8_lossy(&stored.delivery).into_owned(),
        checkpoint: String::from_utf8_lossy(note).into_owned(),
        proof: proof.iter().map(Hash::to_base64).collect(),
    }))
}

/// Collects the evidence of the advisory `selector` names from the stores in `dirs`: the most
/// downstream copy (the first store's among equals) and the logs of the relays on its path.
/// `progress` counts the stores read, then the copies verified to find an id.
pub fn collect(
    dirs: &[PathBuf],
    selector: &str,
    anchors: &TrustAnchors,
    progress: &mut Progress,
) -> Result<AuditBundle, AuditError> {
    let mut stores = Vec::new();
    for dir in dirs {
        stores.push(read_store(dir)?);
        progress.step(&format!("read {}", dir.display()));
    }
    let digest = resolve(&stores, selector, anchors, progress)?;
    let mut copies: Vec<(usize, &StoredDelivery, &StoreContents)> = Vec::new();
    for store in &stores {
        if let Some(stored) = store.deliveries.iter().find(|delivery| delivery.digest == digest) {
            let hops = Delivery::from_json(&stored.delivery).map(|d| d.hops.len()).unwrap_or(0);
            copies.push((hops, stored, store));
        }
    }
    // The most downstream copy; among equals, the first store given (the auditor names the
    // clinic or relay whose path matters first).
    let most_hops = copies.iter().map(|(hops, ..)| *hops).max();
    let Some(&(_, downstream, _)) = copies.iter().find(|(hops, ..)| Some(*hops) == most_hops) else {
        return Err(AuditError::NotFound(format!("no store holds the advisory {digest}")));
    };
    // Log evidence from the relays on that copy's path only (a sibling district's store may
    // hold the same advisory, by its own path).
    let on_path: Vec<String> = Delivery::from_json(&downstream.delivery)
        .map(|delivery| {
            delivery
                .hops
                .iter()
                .filter_map(|envelope| serde_json::from_slice::<kairan_protocol::Hop>(&envelope.payload).ok())
                .map(|hop| hop.relay)
                .collect()
        })
        .unwrap_or_default();
    let mut logs = Vec::new();
    for (_, stored, store) in &copies {
        let evidence = log_evidence(store, stored)
            .map_err(|reason| AuditError::Refused { what: "a store's log".into(), reason })?;
        logs.extend(evidence.filter(|evidence| on_path.contains(&evidence.node)));
    }
    logs.sort_by_key(|evidence| {
        Delivery::from_json(evidence.delivery.as_bytes()).map(|d| d.hops.len()).unwrap_or(0)
    });
    Ok(AuditBundle {
        format: BUNDLE_FORMAT.into(),
        advisory: digest.to_string(),
        delivery: String::from_utf8_lossy(&downstream.delivery).into_owned(),
        logs,
    })
}

/// Verifies a bundle with the trust anchors alone (see the module docs).
pub fn verify_bundle(bundle: &AuditBundle, anchors: &TrustAnchors) -> Result<AuditReport, AuditError> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(AuditError::Malformed(format!("format {:?}, expected {BUNDLE_FORMAT:?}", bundle.format)));
    }
    let refused = |what: String| move |reason: String| AuditError::Refused { what, reason };
    let verified = verify_copy(&bundle.delivery, None, anchors).map_err(refused("the delivery".into()))?;
    let facts = verified.facts();
    if facts.digest.to_string() != bundle.advisory {
        return Err(AuditError::Refused {
            what: "the delivery".into(),
            reason: format!("it is advisory {}, the bundle names {}", facts.digest, bundle.advisory),
        });
    }
    let at = verification_time(verified.value(), None);
    let provenance = Provenance::of(&verified, anchors, at);
    let mut logs = Vec::new();
    for evidence in &bundle.logs {
        logs.push(verify_evidence(evidence, &facts.digest, anchors)?);
    }
    let unlogged = provenance
        .hops
        .iter()
        .map(|hop| hop.relay.clone())
        .filter(|relay| !logs.iter().any(|log| &log.node == relay))
        .collect();
    Ok(AuditReport {
        provenance,
        logs,
        unlogged,
        coverage: Some("not available: clinics do not send signed receipts yet (issue 9)".into()),
    })
}

fn verify_evidence(
    evidence: &LogEvidence,
    digest: &Digest,
    anchors: &TrustAnchors,
) -> Result<LogInclusion, AuditError> {
    let what = format!("{}'s log", evidence.node);
    let refused = |reason: String| AuditError::Refused { what: what.clone(), reason };
    let copy = verify_copy(&evidence.delivery, None, anchors).map_err(&refused)?;
    let facts = copy.facts();
    if facts.digest != *digest {
        return Err(refused(format!("its delivery is advisory {}, not {digest}", facts.digest)));
    }
    // The relay's key is the one the verified copy certifies for its own (last) hop.
    let Some((hop, cert_index)) = facts.hops.last() else {
        return Err(refused("its delivery has no hop".into()));
    };
    if hop.relay != evidence.node || hop.relay_seq != evidence.relay_seq {
        return Err(refused(format!(
            "its delivery's last hop is {} at relay_seq {}, the evidence says {} at {}",
            hop.relay, hop.relay_seq, evidence.node, evidence.relay_seq
        )));
    }
    let key = facts.certs.certs()[*cert_index].cert.key.clone();
    let log = NoteVerifier::new(&log_origin(&evidence.node), SignatureType::Ed25519, key)
        .map_err(|e| refused(e.to_string()))?;
    let opened =
        open_checkpoint(evidence.checkpoint.as_bytes(), &log, &[], 0, verification_time(copy.value(), None))
            .map_err(|e| refused(format!("checkpoint: {}: {e}", e.code())))?;
    let checkpoint = &opened.facts().checkpoint;
    let proof = evidence
        .proof
        .iter()
        .map(|hash| {
            Hash::from_base64(hash)
                .ok_or_else(|| refused(format!("proof hash {hash:?} is not base64 of 32 bytes")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let index = evidence.relay_seq.checked_sub(1).ok_or_else(|| refused("relay_seq 0".into()))?;
    verify_inclusion(
        &leaf_hash(evidence.delivery.as_bytes()),
        index,
        checkpoint.size,
        &proof,
        &checkpoint.root,
    )
    .map_err(|e| refused(format!("inclusion proof: {}: {e}", e.code())))?;
    Ok(LogInclusion {
        node: evidence.node.clone(),
        index,
        size: checkpoint.size,
        root: checkpoint.root.to_base64(),
    })
}
