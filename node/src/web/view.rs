//! Inbox entries as the templates show them: plain strings (escaped by askama when rendered),
//! dates in Japan Standard Time, CSS classes from closed lists (never from advisory text).

use kairan_protocol::{Digest, Kind, Severity, Timestamp, Tlp};

use crate::formats::prefectures::area_name;
use crate::inbox::jst;
use crate::inbox::listing::{Inbox, Item, kind_label, standing_label, status_label};
use crate::inbox::state::{IgnoredReason, Standing};

/// `2021年12月1日 18:00 JST`, for the print view.
pub fn jst_ja(at: Timestamp) -> String {
    let text = jst(at);
    let (year, month, day) = (&text[0..4], &text[5..7], &text[8..10]);
    let trim = |s: &str| s.trim_start_matches('0').to_owned();
    format!("{year}年{}月{}日 {} JST", trim(month), trim(day), &text[11..16])
}

/// The page of one advisory.
pub fn href(digest: &Digest) -> String {
    format!("/advisory/{}", &digest.to_string()["sha256:".len()..])
}

/// The CSS class of a TLP label (TLP 2.0 colours in inbox.css).
pub fn tlp_class(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "tlp-clear",
        Tlp::Green => "tlp-green",
        Tlp::Amber => "tlp-amber",
        Tlp::AmberStrict => "tlp-amber-strict",
        Tlp::Red => "tlp-red",
    }
}

fn severity_class(severity: Severity) -> &'static str {
    match severity {
        Severity::Unknown => "sev-unknown",
        Severity::Minor => "sev-minor",
        Severity::Moderate => "sev-moderate",
        Severity::Severe => "sev-severe",
        Severity::Extreme => "sev-extreme",
    }
}

fn standing_class(standing: Standing) -> &'static str {
    match standing {
        Standing::Current => "current",
        Standing::Superseded => "superseded",
        Standing::Cancelled => "cancelled",
    }
}

/// One note about an entry's state: `text` then, when the other advisory is in the inbox,
/// a link to it.
#[derive(Debug, Clone)]
pub struct Note {
    /// What happened.
    pub text: String,
    /// Link to the other advisory, if received.
    pub link: Option<NoteLink>,
}

/// A link to another inbox entry.
#[derive(Debug, Clone)]
pub struct NoteLink {
    /// Its page.
    pub href: String,
    /// Its human id.
    pub id: String,
}

fn note(inbox: &Inbox, text: String, digest: &Digest) -> Note {
    let link = inbox.label(digest).map(|(id, _)| NoteLink { href: href(digest), id: id.to_owned() });
    let text = if link.is_some() {
        text
    } else {
        format!("{text} sha256:{} (未着 / not received)", digest.short())
    };
    Note { text, link }
}

fn notes(inbox: &Inbox, item: &Item) -> Vec<Note> {
    let state = &item.state;
    let mut out = Vec::new();
    if let Some(by) = &state.cancelled_by {
        out.push(note(inbox, "取消済み / cancelled by".into(), by));
    }
    if let Some(by) = &state.superseded_by {
        out.push(note(inbox, "更新版あり / superseded by".into(), by));
    }
    let (verb_ja, verb_en) = kind_label(item.advisory.kind);
    for digest in &state.applied {
        out.push(note(inbox, format!("{verb_ja}対象 / {verb_en}s"), digest));
    }
    for digest in &state.pending {
        out.push(Note {
            text: format!(
                "{verb_ja}対象は未着、届き次第適用 / {verb_en} applies to sha256:{} when it arrives",
                digest.short()
            ),
            link: None,
        });
    }
    for ignored in &state.ignored {
        let why = match ignored.reason {
            IgnoredReason::OtherOrigin => "発信元が異なる / another origin's advisory",
            IgnoredReason::NotEarlier => "以前の通知ではない / not an earlier advisory",
            IgnoredReason::DrillOnActual => {
                "訓練・試験は実通知を変更しない / a drill cannot change an actual advisory"
            }
            IgnoredReason::Withdrawn => "この通知自体が取消済み / this notice was itself cancelled",
        };
        out.push(note(inbox, format!("適用せず ({why}):"), &ignored.digest));
    }
    out
}

/// One row of the list.
#[derive(Debug, Clone)]
pub struct Row {
    /// Link to the advisory's page.
    pub href: String,
    /// Full digest.
    pub digest: String,
    /// Short digest.
    pub short: String,
    /// `tlp-red` …
    pub tlp_class: &'static str,
    /// `TLP:RED` …
    pub tlp: String,
    /// `sev-severe` …
    pub severity_class: &'static str,
    /// `高`.
    pub severity_ja: &'static str,
    /// `severe`.
    pub severity_en: String,
    /// Title in the primary language.
    pub title: String,
    /// Title in English, if the advisory has one besides.
    pub title_en: Option<String>,
    /// Origin's human id.
    pub id: String,
    /// Origin.
    pub origin: String,
    /// Kind label for updates and cancels (`更新 / update`).
    pub kind: Option<String>,
    /// Status label for drills and tests.
    pub status: Option<String>,
    /// Issued (JST).
    pub issued: String,
    /// Received (JST).
    pub received: String,
    /// `current` …
    pub standing_class: &'static str,
    /// `現行 / current` …
    pub standing: String,
    /// State notes.
    pub notes: Vec<Note>,
    /// For a sealed advisory (content encrypted to its recipients), the plain notice saying so
    /// (shown in place of its text); empty when in clear.
    pub sealed: Vec<String>,
}

impl Row {
    /// The row of one item.
    pub fn of(inbox: &Inbox, item: &Item) -> Self {
        let advisory = &item.advisory;
        let (standing_ja, standing_en) = standing_label(item.state.standing);
        let (kind_ja, kind_en) = kind_label(advisory.kind);
        let digest = item.entry.digest;
        Row {
            href: href(&digest),
            digest: digest.to_string(),
            short: digest.short(),
            tlp_class: tlp_class(advisory.tlp),
            tlp: advisory.tlp.to_string(),
            severity_class: severity_class(advisory.severity),
            severity_ja: advisory.severity.label_ja(),
            severity_en: item.provenance.severity.clone(),
            title: item.provenance.title.clone(),
            title_en: advisory.title.0.get("en").filter(|_| advisory.lang != "en").cloned(),
            id: advisory.id.clone(),
            origin: advisory.origin.clone(),
            kind: (advisory.kind != Kind::Alert).then(|| format!("{kind_ja} / {kind_en}")),
            status: status_label(advisory.status).map(|(ja, en)| format!("{ja} / {en}")),
            issued: jst(advisory.issued_at),
            received: jst(item.entry.received_at),
            standing_class: standing_class(item.state.standing),
            standing: format!("{standing_ja} / {standing_en}"),
            notes: notes(inbox, item),
            sealed: crate::inbox::sealed_lines(advisory, item.unopened.as_deref()).unwrap_or_default(),
        }
    }
}

/// A link of an advisory.
#[derive(Debug, Clone)]
pub struct LinkView {
    /// The URL as signed.
    pub url: String,
    /// Its label in the column's language (the URL when it has none).
    pub label: String,
    /// Whether it is an http(s) URL, so it may be a link (anything else is shown as text).
    pub web: bool,
}

/// One language column of an advisory.
#[derive(Debug, Clone)]
pub struct Column {
    /// Language tag (the `lang` attribute).
    pub lang: String,
    /// Heading: `日本語` / `English`.
    pub heading: &'static str,
    /// Title.
    pub title: String,
    /// Summary.
    pub summary: String,
    /// Body (shown with its line breaks, never as markup).
    pub body: String,
    /// Action items.
    pub items: Vec<String>,
    /// Links.
    pub links: Vec<LinkView>,
    /// Contact.
    pub contact: Option<String>,
}

impl Column {
    /// The column in `lang`, or `None` when the advisory has no text in it. Missing fields
    /// stay empty (no silent fallback to another language inside a column).
    pub fn of(advisory: &kairan_protocol::Advisory, lang: &str) -> Option<Self> {
        let text = |l: &kairan_protocol::Localized| l.0.get(lang).cloned().unwrap_or_default();
        advisory.title.0.get(lang)?;
        Some(Column {
            lang: lang.to_owned(),
            heading: if lang == "en" {
                "English"
            } else if lang.starts_with("ja") {
                "日本語"
            } else {
                "原文 / original"
            },
            title: text(&advisory.title),
            summary: text(&advisory.summary),
            body: text(&advisory.body).trim_end().to_owned(),
            items: advisory.items.iter().map(text).filter(|t| !t.is_empty()).collect(),
            links: advisory
                .links
                .iter()
                .map(|link| {
                    let web = link.url.starts_with("https://") || link.url.starts_with("http://");
                    let label = link.label.0.get(lang).cloned().unwrap_or_else(|| link.url.clone());
                    LinkView { url: link.url.clone(), label, web }
                })
                .collect(),
            contact: advisory.contact.as_ref().map(text).filter(|t| !t.is_empty()),
        })
    }
}

/// The scope as people name it: `東京都 / Tokyo (jp/13)`.
pub fn area(scope: &kairan_protocol::Scope) -> String {
    format!("{} / {} ({scope})", area_name(scope, "ja"), area_name(scope, "en"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_japan_standard_time() {
        let at = Timestamp::parse_rfc3339("2021-12-01T01:00:00Z").expect("time");
        assert_eq!(jst(at), "2021-12-01 10:00:00 JST");
        assert_eq!(jst_ja(at), "2021年12月1日 10:00 JST");
        let late = Timestamp::parse_rfc3339("2021-12-31T15:30:00Z").expect("time");
        assert_eq!(jst_ja(late), "2022年1月1日 00:30 JST");
    }

    #[test]
    fn a_column_never_links_a_non_web_url() {
        let mut advisory = kairan_protocol::fixtures::sample_advisory("mhlw", 1, None);
        advisory.links[0].url = "javascript:alert(1)".into();
        let column = Column::of(&advisory, "ja").expect("ja column");
        assert!(!column.links[0].web);
        assert_eq!(column.heading, "日本語");
        advisory.title.0.remove("en");
        assert!(Column::of(&advisory, "en").is_none());
    }

    #[test]
    fn areas_are_named() {
        let scope = kairan_protocol::Scope::parse("jp/13").expect("scope");
        assert_eq!(area(&scope), "東京都 / Tokyo (jp/13)");
    }
}
