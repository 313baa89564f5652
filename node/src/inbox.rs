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

/// What a sealed advisory (TLP:AMBER+STRICT or TLP:RED, issue 8) shows in place of its title:
/// its content is encrypted to named clinics or a district group, and this node cannot open
/// it (yet), so the reader is told so plainly instead of seeing an empty title.
pub const SEALED_NOTICE_JA: &str = "この勧告は暗号化されています（指定された受信者のみが読めます）";

/// [`SEALED_NOTICE_JA`] in English.
pub const SEALED_NOTICE_EN: &str = "This advisory is encrypted (only its designated recipients can read it)";

/// For a sealed advisory, the lines shown in place of its title, summary and body: the notice
/// (Japanese, then English) and who it was sealed to (counts only). `None` when in clear.
pub fn sealed_lines(advisory: &kairan_protocol::Advisory) -> Option<Vec<String>> {
    let sealed = advisory.sealed.as_ref()?;
    let clinics = sealed.clinics().count();
    let groups = sealed.recipients.len() - clinics;
    let mut to = Vec::new();
    if clinics > 0 {
        to.push(format!("指定医療機関 {clinics} 件 / {clinics} named clinic(s)"));
    }
    if groups > 0 {
        to.push(format!("グループ {groups} 件 / {groups} group(s)"));
    }
    Some(vec![
        SEALED_NOTICE_JA.to_owned(),
        SEALED_NOTICE_EN.to_owned(),
        format!("宛先 / sealed to: {}", to.join(", ")),
        "この端末ではまだ復号できません / this node cannot open sealed advisories yet".to_owned(),
    ])
}

/// The title people see: the advisory's in `lang`, or [`SEALED_NOTICE_JA`] when it is sealed.
pub fn display_title(advisory: &kairan_protocol::Advisory, lang: &str) -> String {
    if advisory.sealed.is_some() { SEALED_NOTICE_JA.to_owned() } else { advisory.title.get(lang).to_owned() }
}

/// The terminal announcement of a new advisory (TLP banner first).
pub fn announce(verified: &Verified<Delivery>, config: &ClinicConfig, now: Timestamp) -> String {
    announcement(verified, &config.id, &config.lang, now)
}

/// [`announce`] for clinic `clinic` reading in `lang`.
fn announcement(verified: &Verified<Delivery>, clinic: &str, lang: &str, now: Timestamp) -> String {
    let advisory = verified.advisory();
    let rule = "═".repeat(72);
    let path: Vec<String> = std::iter::once(format!("{} ({})", advisory.origin, jst(advisory.issued_at)))
        .chain(verified.hops().map(|hop| format!("{} ({})", hop.relay, jst(hop.forwarded_at))))
        .chain(std::iter::once(format!("{clinic} ({})", jst(now))))
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
    match sealed_lines(advisory) {
        Some(lines) => {
            for line in lines {
                out.push_str(&format!(" {line}\n"));
            }
            out.push_str(&format!(" 発行 / issued: {}\n", jst(advisory.issued_at)));
        }
        None => {
            out.push_str(&format!(" {}\n", advisory.title.get(lang)));
            out.push_str(&format!(" {}\n", advisory.summary.get(lang)));
        }
    }
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

#[cfg(test)]
mod tests {
    use kairan_protocol::Kind;
    use kairan_protocol::fixtures::Hierarchy;

    use super::*;

    fn verified(hierarchy: &Hierarchy, advisory: &kairan_protocol::Advisory) -> Verified<Delivery> {
        let delivery = hierarchy.delivery(advisory, 3);
        let revocations = RevocationSet::default();
        let ctx =
            VerifyContext { anchors: &hierarchy.anchors, revocations: &revocations, now: hierarchy.later() };
        verify_delivery(&delivery.to_json(), ctx).expect("verifies")
    }

    #[test]
    fn a_sealed_advisory_is_announced_as_encrypted_with_its_banner_and_origin() {
        let hierarchy = Hierarchy::standard();
        let sealed = testing::advisory(2, Some(kairan_protocol::Digest::of(b"first")), Kind::Alert, &[]);
        assert!(sealed.sealed.is_some() && sealed.title.is_blank());
        let text = announcement(&verified(&hierarchy, &sealed), "chuo-clinic-1", "ja", hierarchy.later());
        assert!(text.contains(" TLP:RED  取扱: 指定された受信者限り"), "{text}");
        assert!(text.contains(SEALED_NOTICE_JA) && text.contains(SEALED_NOTICE_EN), "{text}");
        assert!(text.contains("指定医療機関 2 件 / 2 named clinic(s)"), "{text}");
        assert!(text.contains(" 発信元: mhlw (MHLW-TEST-002, seq 2)"), "{text}");
        assert!(text.contains(&format!("発行 / issued: {}", jst(sealed.issued_at))), "{text}");
        let clear = testing::advisory(1, None, Kind::Alert, &[]);
        let text = announcement(&verified(&hierarchy, &clear), "chuo-clinic-1", "ja", hierarchy.later());
        assert!(text.contains(" テスト注意喚起 第1報\n") && !text.contains(SEALED_NOTICE_JA), "{text}");
    }
}
