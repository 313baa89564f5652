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
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use kairan_protocol::sealed::{RecipientSecret, open_sealed};
use kairan_protocol::{
    Advisory, Delivery, Digest, RevocationSet, Timestamp, Verified, VerifyContext, verify_delivery,
};

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

/// The clinic's trust bundle in force, as its node last stored it: written (0600, durably) at
/// start and at every update, so that `kairan inbox` and the web inbox — which cannot open the
/// running node's store — apply the revocations in force when they verify again.
pub fn trust_copy_path(data_dir: &Path) -> PathBuf {
    data_dir.join("trust-bundle.json")
}

/// Writes the trust copy (see [`trust_copy_path`]).
pub fn write_trust_copy(data_dir: &Path, bundle_json: &[u8]) -> Result<(), crate::store::StoreError> {
    crate::store::durable_fs::write_files_durably(data_dir, [("trust-bundle.json".to_owned(), bundle_json)])
}

/// The revocations in force for readers of the inbox: those of the trust copy that verify
/// with `anchors` at `now` (no copy: none), and what is wrong with the copy, if anything: a
/// copy that does not parse, or holds a statement that does not verify (the node stores only
/// statements it accepted, so that is an edit or damage). Every revocation that verifies is
/// applied either way.
pub fn revocations_in_force(
    data_dir: &Path,
    anchors: &kairan_protocol::TrustAnchors,
    now: Timestamp,
) -> (RevocationSet, Option<String>) {
    let path = trust_copy_path(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (RevocationSet::default(), None),
        Err(e) => return (RevocationSet::default(), Some(format!("{}: {e}", path.display()))),
    };
    match kairan_protocol::TrustBundle::from_json(&bytes).and_then(|bundle| bundle.verify(anchors, now)) {
        Ok(verified) => {
            let facts = verified.facts();
            let problem = facts.refused.first().map(|refusal| {
                format!(
                    "{}: {} statement(s) refused, the first: {}: {}",
                    path.display(),
                    facts.refused.len(),
                    refusal.error.code(),
                    refusal.error
                )
            });
            (facts.revoked.clone(), problem)
        }
        Err(e) => (RevocationSet::default(), Some(format!("{}: {}: {e}", path.display(), e.code()))),
    }
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

/// What a sealed advisory (TLP:AMBER+STRICT or TLP:RED, issue 8) shows in place of its title
/// when this node cannot open it: its content is encrypted to named clinics or a district
/// group, so the reader is told so plainly (and why, [`open_for_display`]) instead of seeing an
/// empty title.
pub const SEALED_NOTICE_JA: &str = "この勧告は暗号化されています（指定された受信者のみが読めます）";

/// [`SEALED_NOTICE_JA`] in English.
pub const SEALED_NOTICE_EN: &str = "This advisory is encrypted (only its designated recipients can read it)";

/// The reason line when no recipient key is configured.
pub const NO_RECIPIENT_KEY: &str = "この端末には受信者鍵が設定されていません（clinic.toml の recipient_key） / \
     no recipient key is configured on this node ([clinic] recipient_key)";

/// Who reads the inbox: the clinic's id and, when `[clinic] recipient_key` is set, its
/// recipient key, which opens — for display only, never written to disk — the sealed
/// advisories sealed to this clinic by name. Group keys are not supported yet.
#[derive(Debug, Clone, Default)]
pub struct Recipient {
    /// The clinic's id (the name of its slot in a sealed advisory).
    pub clinic: String,
    /// Its recipient key, if configured.
    pub key: Option<Arc<RecipientSecret>>,
}

impl Recipient {
    /// The clinic of `config` with its recipient key.
    pub fn of(config: &ClinicConfig) -> Self {
        Recipient { clinic: config.id.clone(), key: config.recipient_key.clone() }
    }
}

/// A sealed advisory as this reader sees it: `None` when it is in clear; `Ok` with the whole
/// advisory (its content decrypted into it, `sealed` kept) when `recipient` opens it; `Err`
/// with the reason (Japanese / English, and the error code) when it cannot. For display only:
/// the result is never stored.
pub type Opened = Option<Result<Advisory, String>>;

/// Opens `verified`'s sealed content for display with `recipient`'s key (see [`Opened`]).
pub fn open_for_display(verified: &Verified<Delivery>, recipient: &Recipient) -> Opened {
    let advisory = verified.advisory();
    advisory.sealed.as_ref()?;
    let Some(key) = &recipient.key else { return Some(Err(NO_RECIPIENT_KEY.to_owned())) };
    Some(match open_sealed(verified, &recipient.clinic, key) {
        Ok(content) => Ok(content.reveal(advisory)),
        Err(error @ kairan_protocol::Error::NotARecipient { .. }) => {
            let mut why = format!(
                "この端末は受信者に含まれていません / this clinic ({}) is not among its recipients ({}: {error})",
                recipient.clinic,
                error.code()
            );
            if advisory.sealed.as_ref().is_some_and(|s| s.recipients.len() > s.clinics().count()) {
                why.push_str(
                    "。グループ宛ての復号にはまだ対応していません / it is also sealed to a group, and this \
                     node cannot open group slots yet",
                );
            }
            Err(why)
        }
        Err(error @ kairan_protocol::Error::WrongRecipientKey { .. }) => Err(format!(
            "この端末の受信者鍵では開けません / this clinic's recipient key does not open it ({}: {error})",
            error.code()
        )),
        Err(error) => Err(format!("復号できません / it cannot be opened ({}: {error})", error.code())),
    })
}

/// Whether `advisory` is sealed and its content is not revealed (what the notice replaces). A
/// revealed one carries its title: the format requires one in the primary language.
pub fn is_closed(advisory: &Advisory) -> bool {
    advisory.sealed.is_some() && advisory.title.is_blank()
}

/// For a sealed advisory this node could not open, the lines shown in place of its title,
/// summary and body: the notice (Japanese, then English), who it was sealed to (counts only)
/// and `why` it was not opened. `None` when in clear or opened.
pub fn sealed_lines(advisory: &Advisory, why: Option<&str>) -> Option<Vec<String>> {
    let sealed = advisory.sealed.as_ref().filter(|_| is_closed(advisory))?;
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
        why.unwrap_or("この端末では復号できません / this node cannot open it").to_owned(),
    ])
}

/// The title people see: the advisory's in `lang`, or [`SEALED_NOTICE_JA`] when it is sealed
/// and not opened.
pub fn display_title(advisory: &Advisory, lang: &str) -> String {
    if is_closed(advisory) { SEALED_NOTICE_JA.to_owned() } else { advisory.title.get(lang).to_owned() }
}

/// The terminal announcement of a new advisory (TLP banner first); a sealed one is opened
/// with the clinic's recipient key when it has one and is a recipient.
pub fn announce(verified: &Verified<Delivery>, config: &ClinicConfig, now: Timestamp) -> String {
    announcement(verified, &Recipient::of(config), &config.lang, now)
}

/// [`announce`] for `recipient` reading in `lang`.
fn announcement(verified: &Verified<Delivery>, recipient: &Recipient, lang: &str, now: Timestamp) -> String {
    let opened = open_for_display(verified, recipient);
    let (advisory, why) = match &opened {
        Some(Ok(revealed)) => (revealed, None),
        Some(Err(why)) => (verified.advisory(), Some(why.as_str())),
        None => (verified.advisory(), None),
    };
    let clinic = &recipient.clinic;
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
    match sealed_lines(advisory, why) {
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
/// A sealed entry comes with what `recipient` could open ([`Opened`]), in memory only.
pub type InboxListing = (Vec<(InboxEntry, Provenance, Opened)>, Vec<(String, String)>);

/// Reads the inbox copies in `data_dir`, verifying each (at its arrival time) again, and
/// opens the sealed ones `recipient` can open (for display; the copies stay sealed).
/// Returns the verified entries and the refused ones (file name, reason).
pub fn read_inbox(
    data_dir: &Path,
    anchors: &kairan_protocol::TrustAnchors,
    recipient: &Recipient,
) -> Result<InboxListing, CliError> {
    let dir = copies_dir(data_dir);
    let mut entries = Vec::new();
    let mut refused = Vec::new();
    let listing = match std::fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((entries, refused)),
        Err(e) => return Err(CliError::io(&dir, e)),
    };
    // Revocations in force apply: an advisory whose origin or relay key was revoked from
    // before it was signed is refused here even though it verified when it arrived.
    let (revocations, problem) = revocations_in_force(data_dir, anchors, crate::clock::now());
    if let Some(problem) = problem {
        refused.push((
            "trust-bundle.json".to_owned(),
            format!("the trust bundle in force does not verify: {problem}"),
        ));
    }
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
                let mut provenance = Provenance::of(&verified, anchors, entry.received_at);
                let opened = open_for_display(&verified, recipient);
                if let Some(Ok(revealed)) = &opened {
                    provenance.title = display_title(revealed, &revealed.lang);
                }
                entries.push((entry, provenance, opened));
            }
            Ok(verified) => refused.push((
                name,
                format!("digest mismatch: file says {}, content is {}", entry.digest, verified.digest()),
            )),
            Err(error) => refused.push((name, format!("{}: {error}", error.code()))),
        }
    }
    entries.sort_by_key(|(entry, _, _)| entry.inbox_seq);
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
        let keyless = Recipient { clinic: "chuo-clinic-1".into(), key: None };
        let text = announcement(&verified(&hierarchy, &sealed), &keyless, "ja", hierarchy.later());
        assert!(text.contains(" TLP:RED  取扱: 指定された受信者限り"), "{text}");
        assert!(text.contains(SEALED_NOTICE_JA) && text.contains(SEALED_NOTICE_EN), "{text}");
        assert!(text.contains("指定医療機関 2 件 / 2 named clinic(s)"), "{text}");
        assert!(text.contains(" 発信元: mhlw (MHLW-TEST-002, seq 2)"), "{text}");
        assert!(text.contains(&format!("発行 / issued: {}", jst(sealed.issued_at))), "{text}");
        assert!(text.contains(NO_RECIPIENT_KEY), "{text}");
        let clear = testing::advisory(1, None, Kind::Alert, &[]);
        let text = announcement(&verified(&hierarchy, &clear), &keyless, "ja", hierarchy.later());
        assert!(text.contains(" テスト注意喚起 第1報\n") && !text.contains(SEALED_NOTICE_JA), "{text}");
    }

    fn clinic(id: &str, key_of: &str) -> Recipient {
        Recipient {
            clinic: id.into(),
            key: Some(Arc::new(kairan_protocol::fixtures::sealed::recipient(key_of))),
        }
    }

    /// The RED advisory of the test inbox, sealed to the fixture clinics 1 and 2.
    fn red(hierarchy: &Hierarchy) -> Verified<Delivery> {
        verified(
            hierarchy,
            &testing::advisory(2, Some(kairan_protocol::Digest::of(b"first")), Kind::Alert, &[]),
        )
    }

    #[test]
    fn a_recipient_clinic_with_its_key_sees_the_sealed_advisory_opened_under_its_banner() {
        let hierarchy = Hierarchy::standard();
        let one = clinic("chuo-clinic-1", "chuo-clinic-1");
        let text = announcement(&red(&hierarchy), &one, "ja", hierarchy.later());
        assert!(text.contains(" TLP:RED  取扱: 指定された受信者限り"), "{text}");
        assert!(text.contains(" テスト注意喚起 第2報\n"), "{text}");
        assert!(!text.contains(SEALED_NOTICE_JA), "{text}");
        let two = clinic("chuo-clinic-2", "chuo-clinic-2");
        let Some(Ok(opened)) = open_for_display(&red(&hierarchy), &two) else { panic!("clinic 2 opens it") };
        assert_eq!(opened.title.get("en"), "Test advisory 2");
        assert!(opened.sealed.is_some() && !is_closed(&opened));
    }

    #[test]
    fn a_clinic_not_among_the_recipients_sees_the_notice_saying_so() {
        let hierarchy = Hierarchy::standard();
        let three = clinic("chuo-clinic-3", "chuo-clinic-3");
        let text = announcement(&red(&hierarchy), &three, "ja", hierarchy.later());
        assert!(
            text.contains(SEALED_NOTICE_JA) && text.contains(" TLP:RED  取扱: 指定された受信者限り"),
            "{text}"
        );
        assert!(text.contains("この端末は受信者に含まれていません"), "{text}");
        assert!(text.contains("not_a_recipient"), "{text}");
        assert!(!text.contains("テスト注意喚起 第2報"), "{text}");
    }

    #[test]
    fn a_group_sealed_advisory_says_group_slots_are_not_opened_yet() {
        use kairan_protocol::sealed::{GroupKey, To, seal};
        let hierarchy = Hierarchy::standard();
        let mut strict = kairan_protocol::fixtures::sample_advisory(
            "mhlw",
            2,
            Some(kairan_protocol::Digest::of(b"first")),
        );
        strict.tlp = kairan_protocol::Tlp::AmberStrict;
        let mut rng = kairan_protocol::fixtures::sealed::rng("inbox-group-test");
        let group = GroupKey::generate(strict.scope.clone(), 1, &mut rng);
        let sealed = seal(&strict, &[To::Group(&group)], &mut rng).expect("seal");
        let one = clinic("chuo-clinic-1", "chuo-clinic-1");
        let text = announcement(&verified(&hierarchy, &sealed), &one, "ja", hierarchy.later());
        assert!(text.contains(SEALED_NOTICE_JA) && text.contains("not_a_recipient"), "{text}");
        assert!(text.contains("cannot open group slots yet"), "{text}");
    }

    #[test]
    fn a_recipient_slot_opened_with_another_key_shows_the_notice_with_the_wrong_key_reason() {
        let hierarchy = Hierarchy::standard();
        let wrong = clinic("chuo-clinic-1", "chuo-clinic-2");
        let text = announcement(&red(&hierarchy), &wrong, "ja", hierarchy.later());
        assert!(text.contains(SEALED_NOTICE_JA), "{text}");
        assert!(
            text.contains("この端末の受信者鍵では開けません") && text.contains("wrong_recipient_key"),
            "{text}"
        );
        assert!(!text.contains("テスト注意喚起 第2報"), "{text}");
    }

    #[test]
    fn the_inbox_listing_opens_for_display_only_and_the_copies_stay_sealed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let digests = testing::alert_update_cancel(&hierarchy, dir.path());
        let one = clinic("chuo-clinic-1", "chuo-clinic-1");
        let inbox = listing::Inbox::read_as(dir.path(), &hierarchy.anchors, &one).expect("read");
        let item = inbox.get(&digests[1]).expect("sealed update");
        assert_eq!(
            (item.provenance.title.as_str(), item.unopened.as_deref()),
            ("テスト注意喚起 第2報", None)
        );
        let text = command::content_text(&item.advisory, item.unopened.as_deref(), "ja");
        assert!(text.starts_with("テスト注意喚起 第2報\n\n"), "{text}");
        let three = clinic("chuo-clinic-3", "chuo-clinic-3");
        let inbox = listing::Inbox::read_as(dir.path(), &hierarchy.anchors, &three).expect("read");
        let item = inbox.get(&digests[1]).expect("sealed update");
        assert_eq!(item.provenance.title, SEALED_NOTICE_JA);
        let text = command::content_text(&item.advisory, item.unopened.as_deref(), "ja");
        assert!(text.starts_with(SEALED_NOTICE_JA) && text.contains("not_a_recipient"), "{text}");
        for file in std::fs::read_dir(copies_dir(dir.path())).expect("copies") {
            let bytes = std::fs::read(file.expect("entry").path()).expect("copy");
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("テスト注意喚起 第2報") && !text.contains("Test advisory 2"), "{text}");
        }
    }
}
