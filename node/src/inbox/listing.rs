//! The inbox as one value — every verified entry with its decoded advisory and its current
//! state ([`super::state`]), and the copies refused — and its JSON forms, shared by
//! `kairan inbox list|show --json` and the clinic's web page (`/api/inbox`, `/api/advisory/…`).

use std::path::Path;

use serde::Serialize;

use kairan_protocol::{Advisory, Digest, Kind, Status, Timestamp, TrustAnchors};

use super::state::{EntryState, Fact, Standing, resolve};
use super::{InboxEntry, InboxListing, Recipient, read_inbox};
use crate::error::CliError;
use crate::provenance::Provenance;

/// One verified inbox entry, decoded, with its state.
#[derive(Debug, Clone)]
pub struct Item {
    /// The readable copy.
    pub entry: InboxEntry,
    /// Its verified provenance.
    pub provenance: Provenance,
    /// The advisory (decoded after verification); a sealed one the reader opened has its
    /// content decrypted into it (in memory only, for display).
    pub advisory: Advisory,
    /// For a sealed advisory the reader could not open: why (shown with the notice).
    pub unopened: Option<String>,
    /// Current, superseded or cancelled; pending references; history.
    pub state: EntryState,
}

/// A copy that failed verification: listed, never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    /// File name in the inbox directory.
    pub file: String,
    /// Why it was refused.
    pub reason: String,
}

/// The whole inbox, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Inbox {
    /// Verified entries in inbox order.
    pub items: Vec<Item>,
    /// Refused copies.
    pub refused: Vec<Refused>,
}

impl Inbox {
    /// Reads and verifies every copy in `data_dir` and resolves the state, opening no sealed
    /// advisory (no recipient key).
    pub fn read(data_dir: &Path, anchors: &TrustAnchors) -> Result<Self, CliError> {
        Self::read_as(data_dir, anchors, &Recipient::default())
    }

    /// [`Inbox::read`] for `recipient`: the sealed advisories its key opens are shown opened.
    pub fn read_as(data_dir: &Path, anchors: &TrustAnchors, recipient: &Recipient) -> Result<Self, CliError> {
        Ok(Self::from_listing(read_inbox(data_dir, anchors, recipient)?))
    }

    /// Decodes the verified entries of a listing and resolves their state.
    pub fn from_listing((entries, refused): InboxListing) -> Self {
        let mut refused: Vec<Refused> =
            refused.into_iter().map(|(file, reason)| Refused { file, reason }).collect();
        let mut decoded = Vec::new();
        for (entry, provenance, opened) in entries {
            match serde_json::from_slice::<Advisory>(&entry.delivery.advisory.payload) {
                Ok(advisory) => {
                    let (advisory, unopened) = match opened {
                        Some(Ok(revealed)) => (revealed, None),
                        Some(Err(why)) => (advisory, Some(why)),
                        None => (advisory, None),
                    };
                    decoded.push((entry, provenance, advisory, unopened));
                }
                Err(e) => refused.push(Refused {
                    file: format!("{}.json", entry.digest.to_string().trim_start_matches("sha256:")),
                    reason: format!("advisory payload: {e}"),
                }),
            }
        }
        let facts: Vec<Fact> = decoded.iter().map(|(e, _, a, _)| Fact::of(e.digest, a)).collect();
        let mut states = resolve(&facts);
        let items = decoded
            .into_iter()
            .map(|(entry, provenance, advisory, unopened)| {
                let state = states.remove(&entry.digest).unwrap_or_else(|| EntryState {
                    standing: Standing::Current,
                    superseded_by: None,
                    cancelled_by: None,
                    applied: Vec::new(),
                    pending: Vec::new(),
                    ignored: Vec::new(),
                    history: vec![entry.digest],
                });
                Item { entry, provenance, advisory, unopened, state }
            })
            .collect();
        Inbox { items, refused }
    }

    /// The entry with this digest.
    pub fn get(&self, digest: &Digest) -> Option<&Item> {
        self.items.iter().find(|item| item.entry.digest == *digest)
    }

    /// The one entry whose digest (`sha256:…` or its hex) starts with `wanted`.
    pub fn find(&self, wanted: &str) -> Result<&Item, String> {
        let wanted = wanted.trim_start_matches("sha256:").to_ascii_lowercase();
        let matches: Vec<&Item> = self
            .items
            .iter()
            .filter(|item| item.entry.digest.to_string()["sha256:".len()..].starts_with(&wanted))
            .collect();
        match matches[..] {
            [item] => Ok(item),
            _ if wanted.is_empty() => Err("give a digest (sha256:… or a unique prefix of its hex)".into()),
            _ => Err(format!("{} advisories match {wanted:?}", matches.len())),
        }
    }

    /// The short human id and title of a digest, if it is in the inbox.
    pub fn label(&self, digest: &Digest) -> Option<(&str, &str)> {
        self.get(digest).map(|item| (item.advisory.id.as_str(), item.provenance.title.as_str()))
    }

    /// `kairan inbox list --json` and `/api/inbox`.
    pub fn list_json(&self) -> ListJson<'_> {
        ListJson { entries: self.items.iter().map(Summary::of).collect(), refused: &self.refused }
    }
}

/// One line of the list, as JSON.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// Inbox sequence number.
    pub inbox_seq: u64,
    /// Advisory digest.
    pub digest: &'a Digest,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Origin id.
    pub origin: &'a str,
    /// Origin's human id.
    pub id: &'a str,
    /// Origin sequence number.
    pub seq: u64,
    /// alert, update or cancel.
    pub kind: Kind,
    /// actual, exercise or test.
    pub status: Status,
    /// `TLP:AMBER`.
    pub tlp: &'a str,
    /// Handling note.
    pub handling: &'a str,
    /// Severity.
    pub severity: &'a str,
    /// Scope.
    pub scope: &'a str,
    /// Title in the advisory's primary language ([`crate::inbox::SEALED_NOTICE_JA`] when sealed).
    pub title: &'a str,
    /// Whether it is sealed (content encrypted to its recipients); omitted when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
    /// Title in English, when the advisory has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title_en: Option<&'a str>,
    /// Issued.
    pub issued_at: Timestamp,
    /// Expires.
    pub expires_at: Timestamp,
    /// The digests it updates or cancels.
    pub references: &'a [Digest],
    /// `origin → relay → relay`.
    pub path: String,
    /// Current state.
    pub state: &'a EntryState,
}

impl<'a> Summary<'a> {
    fn of(item: &'a Item) -> Self {
        let (p, a) = (&item.provenance, &item.advisory);
        Summary {
            inbox_seq: item.entry.inbox_seq,
            digest: &item.entry.digest,
            received_at: item.entry.received_at,
            origin: &a.origin,
            id: &a.id,
            seq: a.seq,
            kind: a.kind,
            status: a.status,
            tlp: &p.tlp,
            handling: &a.handling,
            severity: &p.severity,
            scope: &p.scope,
            title: &p.title,
            sealed: p.sealed,
            title_en: a.title.0.get("en").filter(|_| a.lang != "en").map(String::as_str),
            issued_at: a.issued_at,
            expires_at: a.expires_at,
            references: &a.references,
            path: p.path(),
            state: &item.state,
        }
    }
}

/// The whole list, as JSON.
#[derive(Debug, Serialize)]
pub struct ListJson<'a> {
    /// Verified entries, oldest first.
    pub entries: Vec<Summary<'a>>,
    /// Copies that failed verification (not shown).
    pub refused: &'a [Refused],
}

/// One advisory in full, as JSON: the provenance fields (as before), plus the inbox fields,
/// the state and the advisory itself.
#[derive(Debug, Serialize)]
pub struct ShowJson<'a> {
    /// Verified provenance (its fields at the top level).
    #[serde(flatten)]
    pub provenance: &'a Provenance,
    /// Inbox sequence number.
    pub inbox_seq: u64,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Current state.
    pub state: &'a EntryState,
    /// The advisory as signed; a sealed one the reader opened with its content decrypted
    /// into it (in memory; the stored copy stays sealed).
    pub advisory: &'a Advisory,
    /// For a sealed advisory the reader could not open: why. Omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unopened: Option<&'a str>,
}

impl<'a> ShowJson<'a> {
    /// The JSON form of one item.
    pub fn of(item: &'a Item) -> Self {
        ShowJson {
            provenance: &item.provenance,
            inbox_seq: item.entry.inbox_seq,
            received_at: item.entry.received_at,
            state: &item.state,
            advisory: &item.advisory,
            unopened: item.unopened.as_deref(),
        }
    }
}

/// Labels for people, Japanese then English.
pub fn standing_label(standing: Standing) -> (&'static str, &'static str) {
    match standing {
        Standing::Current => ("現行", "current"),
        Standing::Superseded => ("更新済み", "superseded"),
        Standing::Cancelled => ("取消済み", "cancelled"),
    }
}

/// The kind, Japanese then English.
pub fn kind_label(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Alert => ("注意喚起", "alert"),
        Kind::Update => ("更新", "update"),
        Kind::Cancel => ("取消", "cancel"),
    }
}

/// The status, Japanese then English; none for `actual`.
pub fn status_label(status: Status) -> Option<(&'static str, &'static str)> {
    match status {
        Status::Actual => None,
        Status::Exercise => Some(("訓練", "exercise")),
        Status::Test => Some(("試験", "test")),
    }
}

#[cfg(test)]
mod tests {
    use kairan_protocol::fixtures::Hierarchy;

    use super::*;
    use crate::inbox::testing;

    #[test]
    fn reads_verifies_and_resolves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let digests = testing::alert_update_cancel(&hierarchy, dir.path());
        let inbox = Inbox::read(dir.path(), &hierarchy.anchors).expect("read");
        assert!(inbox.refused.is_empty(), "{:?}", inbox.refused);
        let standings: Vec<Standing> = inbox.items.iter().map(|i| i.state.standing).collect();
        assert_eq!(standings, vec![Standing::Cancelled, Standing::Current, Standing::Current]);
        assert_eq!(inbox.items[0].state.superseded_by, Some(digests[1]));
        assert_eq!(inbox.items[0].state.cancelled_by, Some(digests[2]));
        assert_eq!(inbox.label(&digests[0]).map(|l| l.0), Some("MHLW-TEST-001"));
    }

    #[test]
    fn a_tampered_copy_is_refused_not_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let digests = testing::alert_update_cancel(&hierarchy, dir.path());
        testing::tamper(dir.path(), &digests[1], |advisory| {
            advisory.title = kairan_protocol::Localized::new("ja", "<script>偽</script>");
        });
        let inbox = Inbox::read(dir.path(), &hierarchy.anchors).expect("read");
        assert_eq!(inbox.items.len(), 2);
        assert!(inbox.get(&digests[1]).is_none());
        assert_eq!(inbox.refused.len(), 1);
        assert!(!inbox.refused[0].reason.is_empty(), "{:?}", inbox.refused);
        // The update is gone, so the first advisory is cancelled but no longer superseded.
        assert_eq!(inbox.items[0].state.superseded_by, None);
    }

    #[test]
    fn json_forms_carry_the_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let digests = testing::alert_update_cancel(&hierarchy, dir.path());
        let inbox = Inbox::read(dir.path(), &hierarchy.anchors).expect("read");
        let list = serde_json::to_value(inbox.list_json()).expect("list json");
        assert_eq!(list["entries"][0]["state"]["standing"], "cancelled");
        assert_eq!(list["entries"][0]["title_en"], "Test advisory 1");
        assert_eq!(list["entries"][2]["kind"], "cancel");
        assert_eq!(list["entries"][2]["state"]["applied"][0], digests[0].to_string());
        assert_eq!(list["refused"], serde_json::json!([]));
        let item = inbox.find(&digests[0].to_string()[7..20]).expect("unique prefix");
        let show = serde_json::to_value(ShowJson::of(item)).expect("show json");
        assert_eq!(show["digest"], digests[0].to_string());
        assert_eq!(show["hops"].as_array().map(Vec::len), Some(3));
        assert_eq!(show["state"]["cancelled_by"], digests[2].to_string());
        assert_eq!(show["advisory"]["id"], "MHLW-TEST-001");
        assert!(inbox.find("").is_err());
        assert!(inbox.find("zz").is_err());
    }

    #[test]
    fn a_sealed_advisory_is_listed_as_encrypted_not_blank() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let digests = testing::alert_update_cancel(&hierarchy, dir.path());
        let inbox = Inbox::read(dir.path(), &hierarchy.anchors).expect("read");
        let sealed = inbox.get(&digests[1]).expect("the sealed update is shown, not refused");
        assert!(sealed.advisory.sealed.is_some());
        assert_eq!(sealed.provenance.title, crate::inbox::SEALED_NOTICE_JA);
        assert_eq!(inbox.label(&digests[1]), Some(("MHLW-TEST-002", crate::inbox::SEALED_NOTICE_JA)));
        let list = serde_json::to_value(inbox.list_json()).expect("list json");
        assert_eq!(list["entries"][1]["tlp"], "TLP:RED");
        assert_eq!(list["entries"][1]["title"], crate::inbox::SEALED_NOTICE_JA);
        assert_eq!(list["entries"][1]["sealed"], true);
        assert_eq!(
            (&list["entries"][1]["id"], &list["entries"][1]["origin"]),
            (&"MHLW-TEST-002".into(), &"mhlw".into())
        );
        assert!(list["entries"][1].get("title_en").is_none());
        assert!(list["entries"][0].get("sealed").is_none(), "absent when in clear");
        let text = crate::inbox::command::content_text(&sealed.advisory, sealed.unopened.as_deref(), "ja");
        assert!(text.starts_with(crate::inbox::SEALED_NOTICE_JA), "{text}");
        assert!(text.contains("指定医療機関 2 件"), "{text}");
        let issued = crate::inbox::jst(sealed.advisory.issued_at);
        assert!(
            text.contains(&format!("MHLW-TEST-002 (発信元 / origin mhlw, seq 2, 発行 / issued {issued})")),
            "{text}"
        );
        let clear = crate::inbox::command::content_text(&inbox.items[0].advisory, None, "ja");
        assert!(clear.starts_with("テスト注意喚起 第1報\n\n"), "{clear}");
    }
}
