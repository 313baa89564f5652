//! The clinic's inbox as people and other processes read it.
//!
//! sled allows one process per database, so the clinic daemon also writes a readable copy of
//! each accepted delivery to `DATA_DIR/advisories/<digest>.json` (written to a temporary file
//! and renamed, so a reader never sees half a file; synced before the delivery is
//! acknowledged, [`store`]). `kairan inbox` reads those copies — while the daemon runs — and
//! verifies each one again before showing it. The directory is 0700, the copies 0600.
//!
//! - [`store`]: the clinic's store — its disk store and the copies, durable together.
//! - [`state`]: which advisories an update superseded or a cancel withdrew (a pure function
//!   of the verified entries, applied on every read).
//! - [`listing`]: the verified inbox with its state, and its JSON forms (also the web page's).
//! - [`command`]: `kairan inbox list|show [--json]`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kairan_protocol::{Delivery, Digest, RevocationSet, Timestamp, Verified, VerifyContext, verify_delivery};

use crate::config::ClinicConfig;
use crate::error::CliError;
use crate::provenance::Provenance;

pub mod command;
pub mod listing;
pub mod state;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;

/// A readable copy of an inbox entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Advisory digest.
    pub digest: Digest,
    /// Inbox sequence number.
    pub inbox_seq: u64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// The delivery as received.
    pub delivery: Delivery,
}

/// Where the readable copies live.
pub fn copies_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("advisories")
}

pub(crate) fn copy_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(copy_name(digest))
}

/// The file name of the copy of `digest`.
fn copy_name(digest: &Digest) -> String {
    format!("{}.json", digest.to_string().trim_start_matches("sha256:"))
}

/// The readable copy of an inbox entry: its file name and contents.
pub(crate) fn copy_of(
    digest: &Digest,
    inbox_seq: u64,
    received_at: Timestamp,
    delivery: &[u8],
) -> Result<(String, Vec<u8>), crate::store::StoreError> {
    let delivery = Delivery::from_json(delivery).map_err(|e| crate::store::StoreError::Corrupt {
        tree: "deliveries",
        reason: format!("stored delivery {digest}: {e}"),
    })?;
    let entry = InboxEntry { digest: *digest, inbox_seq, received_at, delivery };
    Ok((copy_name(digest), serde_json::to_vec_pretty(&entry).unwrap_or_default()))
}

/// Writes the readable copy of one inbox entry, durably.
#[cfg(test)]
pub(crate) fn write_copy(
    dir: &Path,
    digest: &Digest,
    inbox_seq: u64,
    received_at: Timestamp,
    delivery: &[u8],
) -> Result<(), crate::store::StoreError> {
    let (name, contents) = copy_of(digest, inbox_seq, received_at, delivery)?;
    crate::store::durable_fs::write_files_durably(dir, [(name, contents.as_slice())])
}

/// Japan Standard Time, for people: `2021-12-01 18:00:00 JST`.
pub fn jst(at: Timestamp) -> String {
    let shifted = at.plus_secs(9 * 3600).to_rfc3339();
    format!("{} {} JST", &shifted[..10], &shifted[11..19])
}

/// Time of day in Japan Standard Time with milliseconds: `18:00:00.123`.
pub fn jst_clock(at: Timestamp) -> String {
    at.plus_secs(9 * 3600).to_rfc3339()[11..23].to_owned()
}

/// The terminal announcement of a new advisory (TLP banner first).
pub fn announce(verified: &Verified<Delivery>, config: &ClinicConfig, now: Timestamp) -> String {
    let advisory = verified.advisory();
    let lang = config.lang.as_str();
    let rule = "═".repeat(72);
    let path: Vec<String> = std::iter::once(format!("{} ({})", advisory.origin, jst(advisory.issued_at)))
        .chain(verified.hops().map(|hop| format!("{} ({})", hop.relay, jst(hop.forwarded_at))))
        .chain(std::iter::once(format!("{} ({})", config.id, jst(now))))
        .collect();
    let mut out = String::new();
    out.push_str(&format!("{rule}\n"));
    out.push_str(&format!(" {}  取扱: {}\n", advisory.tlp, advisory.handling));
    out.push_str(&format!(
        " 重要度: {} ({:?})   種別: {:?}   状態: {:?}   対象: {}\n",
        advisory.severity.label_ja(),
        advisory.severity,
        advisory.kind,
        advisory.status,
        advisory.scope
    ));
    if !advisory.references.is_empty() {
        let references: Vec<String> = advisory.references.iter().map(Digest::short).collect();
        out.push_str(&format!(" 対象 / references: {}\n", references.join(", ")));
    }
    out.push_str(&format!(" {}\n", advisory.title.get(lang)));
    out.push_str(&format!(" {}\n", advisory.summary.get(lang)));
    out.push_str(&format!(" 発信元: {} ({}, seq {})\n", advisory.origin, advisory.id, advisory.seq));
    out.push_str(&format!(" 経路: {}\n", path.join(" → ")));
    out.push_str(&format!(" 検証済み / verified: {}\n", verified.digest()));
    out.push_str(&rule);
    out
}

/// What [`read_inbox`] found: the verified entries, and the refused ones (file name, reason).
pub type InboxListing = (Vec<(InboxEntry, Provenance)>, Vec<(String, String)>);

/// Reads the inbox copies in `data_dir`, verifying each (at its arrival time) again.
/// Returns the verified entries and the refused ones (file name, reason).
pub fn read_inbox(
    data_dir: &Path,
    anchors: &kairan_protocol::TrustAnchors,
) -> Result<InboxListing, CliError> {
    let dir = copies_dir(data_dir);
    let mut entries = Vec::new();
    let mut refused = Vec::new();
    let listing = match std::fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((entries, refused)),
        Err(e) => return Err(CliError::io(&dir, e)),
    };
    let revocations = RevocationSet::default();
    for item in listing {
        let path = item.map_err(|e| CliError::io(&dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let bytes = std::fs::read(&path).map_err(|e| CliError::io(&path, e))?;
        let entry: InboxEntry = match serde_json::from_slice(&bytes) {
            Ok(entry) => entry,
            Err(e) => {
                refused.push((name, format!("unreadable: {e}")));
                continue;
            }
        };
        let ctx = VerifyContext { anchors, revocations: &revocations, now: entry.received_at };
        match verify_delivery(&entry.delivery.to_json(), ctx) {
            Ok(verified) if verified.digest() == entry.digest => {
                let provenance = Provenance::of(&verified, anchors, entry.received_at);
                entries.push((entry, provenance));
            }
            Ok(verified) => refused.push((
                name,
                format!("digest mismatch: file says {}, content is {}", entry.digest, verified.digest()),
            )),
            Err(error) => refused.push((name, format!("{}: {error}", error.code()))),
        }
    }
    entries.sort_by_key(|(entry, _)| entry.inbox_seq);
    Ok((entries, refused))
}
