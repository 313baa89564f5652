//! The advisory payload (`application/vnd.kairan.advisory+json`), drawn from CSAF 2.0 and CAP 1.2.
//!
//! Japanese is a first-class language: localized text is a map from language tag to text,
//! and every advisory names its primary language (`lang`, normally `ja`), in which the title
//! must be present.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::Digest;
use crate::limits::{MAX_ID_BYTES, MAX_LANGUAGES, MAX_LIST_ENTRIES, MAX_SHORT_TEXT_CHARS};
use crate::scope::Scope;
use crate::sealed::Sealed;
use crate::sealed::content::ContentView;
use crate::time::Timestamp;

/// What an advisory does (CAP `msgType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A new advisory.
    Alert,
    /// Updates the advisories it references.
    Update,
    /// Withdraws the advisories it references.
    Cancel,
}

/// Whether the advisory is real (CAP `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A real advisory: act on it.
    Actual,
    /// A drill.
    Exercise,
    /// A technical test; clinics may hide it.
    Test,
}

/// Traffic Light Protocol 2.0 label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tlp {
    /// TLP:CLEAR — may be shared without limit.
    #[serde(rename = "CLEAR")]
    Clear,
    /// TLP:GREEN — within the community.
    #[serde(rename = "GREEN")]
    Green,
    /// TLP:AMBER — recipients' organisations and their clients on a need-to-know basis.
    #[serde(rename = "AMBER")]
    Amber,
    /// TLP:AMBER+STRICT — the recipients' organisation only.
    #[serde(rename = "AMBER+STRICT")]
    AmberStrict,
    /// TLP:RED — named recipients only.
    #[serde(rename = "RED")]
    Red,
}

impl Tlp {
    /// Whether advisories with this label travel sealed (encrypted end to end): AMBER+STRICT
    /// and RED must be, the others must not be.
    pub fn must_be_sealed(self) -> bool {
        matches!(self, Tlp::AmberStrict | Tlp::Red)
    }
}

impl fmt::Display for Tlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tlp::Clear => "TLP:CLEAR",
            Tlp::Green => "TLP:GREEN",
            Tlp::Amber => "TLP:AMBER",
            Tlp::AmberStrict => "TLP:AMBER+STRICT",
            Tlp::Red => "TLP:RED",
        })
    }
}

/// Severity (CAP 1.2 `severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Severity not known.
    Unknown,
    /// Minimal threat.
    Minor,
    /// Possible threat.
    Moderate,
    /// Significant threat.
    Severe,
    /// Extraordinary threat.
    Extreme,
}

impl Severity {
    /// The Japanese label shown to clinic staff.
    pub fn label_ja(self) -> &'static str {
        match self {
            Severity::Unknown => "不明",
            Severity::Minor => "低",
            Severity::Moderate => "中",
            Severity::Severe => "高",
            Severity::Extreme => "緊急",
        }
    }
}

/// Text in several languages: language tag (`ja`, `en`, `ja-JP`) → text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Localized(pub BTreeMap<String, String>);

impl Localized {
    /// Text in one language.
    pub fn new(lang: &str, text: &str) -> Self {
        Self(BTreeMap::from([(lang.to_owned(), text.to_owned())]))
    }

    /// Adds a language.
    pub fn with(mut self, lang: &str, text: &str) -> Self {
        self.0.insert(lang.to_owned(), text.to_owned());
        self
    }

    /// The text in `lang` if present, else Japanese, else English, else any; "" if none.
    pub fn get(&self, lang: &str) -> &str {
        [lang, "ja", "en"]
            .iter()
            .find_map(|l| self.0.get(*l))
            .or_else(|| self.0.values().next())
            .map_or("", String::as_str)
    }

    /// Whether no language has non-blank text.
    pub fn is_blank(&self) -> bool {
        self.0.values().all(|text| text.trim().is_empty())
    }

    pub(crate) fn check(&self, field: &str, max_chars: usize) -> Result<()> {
        if self.0.len() > MAX_LANGUAGES {
            return Err(invalid(format!("{field} has {} languages, limit {MAX_LANGUAGES}", self.0.len())));
        }
        for (lang, text) in &self.0 {
            check_lang_tag(field, lang)?;
            let chars = text.chars().count();
            if chars > max_chars {
                return Err(invalid(format!("{field}.{lang} is {chars} characters, limit {max_chars}")));
            }
        }
        Ok(())
    }
}

fn check_lang_tag(field: &str, tag: &str) -> Result<()> {
    let valid = (2..=16).contains(&tag.len())
        && tag.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    if valid { Ok(()) } else { Err(invalid(format!("{field}: {tag:?} is not a language tag"))) }
}

/// A link to a fuller source (IPA, JPCERT/CC, vendor page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// `https://` URL.
    pub url: String,
    /// What the link is, localized.
    pub label: Localized,
}

/// Upstream attribution: who first published what this advisory relays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The upstream body, e.g. `JPCERT/CC`.
    pub name: String,
    /// The upstream document, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// An advisory, as signed by an origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advisory {
    /// The origin's id; must equal the subject id of the origin certificate that signs it.
    pub origin: String,
    /// The origin's sequence number: 1 for its first advisory, +1 each time.
    pub seq: u64,
    /// Digest of the origin's previous advisory (`seq - 1`); absent exactly when `seq` is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Digest>,
    /// The origin's human identifier, e.g. `MHLW-CS-2021-012`.
    pub id: String,
    /// Alert, update or cancel.
    pub kind: Kind,
    /// Digests of the advisories this one updates or cancels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Digest>,
    /// Actual, exercise or test.
    pub status: Status,
    /// When the origin issued it.
    pub issued_at: Timestamp,
    /// After this instant the advisory is no longer relayed.
    pub expires_at: Timestamp,
    /// TLP 2.0 label.
    pub tlp: Tlp,
    /// Handling note, e.g. "medical institution staff and contracted vendors only".
    pub handling: String,
    /// The region it concerns; must lie inside the origin certificate's scope.
    pub scope: Scope,
    /// CAP severity.
    pub severity: Severity,
    /// Free categories, e.g. `ransomware`.
    #[serde(default)]
    pub categories: Vec<String>,
    /// CVE identifiers.
    #[serde(default)]
    pub cves: Vec<String>,
    /// Primary language tag (normally `ja`); the title must exist in it.
    pub lang: String,
    /// Title.
    pub title: Localized,
    /// One-paragraph summary.
    pub summary: Localized,
    /// Full text.
    pub body: Localized,
    /// Action items / countermeasures, in order.
    #[serde(default)]
    pub items: Vec<Localized>,
    /// Further reading.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Whom to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Localized>,
    /// Upstream attribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// For TLP:AMBER+STRICT and TLP:RED: the confidential fields above, encrypted to the
    /// recipients ([`crate::sealed`]); those fields are then empty. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
}

pub(crate) fn invalid(reason: String) -> Error {
    Error::InvalidAdvisory(reason)
}

pub(crate) fn check_short(field: &str, text: &str) -> Result<()> {
    let chars = text.chars().count();
    if chars > MAX_SHORT_TEXT_CHARS {
        return Err(invalid(format!("{field} is {chars} characters, limit {MAX_SHORT_TEXT_CHARS}")));
    }
    Ok(())
}

pub(crate) fn check_list(field: &str, len: usize) -> Result<()> {
    if len > MAX_LIST_ENTRIES {
        return Err(invalid(format!("{field} has {len} entries, limit {MAX_LIST_ENTRIES}")));
    }
    Ok(())
}

pub(crate) fn is_cve(text: &str) -> bool {
    let mut parts = text.splitn(3, '-');
    let (Some("CVE"), Some(year), Some(number)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && (4..=19).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// Checks an identifier: 1–[`MAX_ID_BYTES`] bytes of ASCII letters, digits, `-`, `_`, `.`.
pub fn check_id(field: &str, id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(format!("{field} {id:?} must be 1-{MAX_ID_BYTES} characters of A-Z, a-z, 0-9, '-', '_', '.'"))
    }
}

impl Advisory {
    /// The sequence chain this advisory numbers itself in: its origin and exact scope.
    pub fn chain(&self) -> crate::sequence::ChainId {
        crate::sequence::ChainId::new(self.origin.clone(), self.scope.clone())
    }

    /// Checks every rule of the format that does not need the origin certificate or a clock.
    pub fn validate(&self) -> Result<()> {
        check_id("origin", &self.origin).map_err(invalid)?;
        check_short("id", &self.id)?;
        if self.id.trim().is_empty() {
            return Err(invalid("id is empty".into()));
        }
        match (self.seq, &self.prev) {
            (0, _) => return Err(invalid("seq starts at 1".into())),
            (1, Some(_)) => return Err(invalid("seq 1 must not have prev".into())),
            (2.., None) => return Err(invalid(format!("seq {} must name prev", self.seq))),
            _ => {}
        }
        if self.expires_at <= self.issued_at {
            return Err(invalid(format!(
                "expires_at {} is not after issued_at {}",
                self.expires_at, self.issued_at
            )));
        }
        if matches!(self.kind, Kind::Update | Kind::Cancel) && self.references.is_empty() {
            return Err(invalid(
                format!("a {:?} must reference the advisories it replaces", self.kind).to_lowercase(),
            ));
        }
        check_lang_tag("lang", &self.lang)?;
        check_short("handling", &self.handling)?;
        check_list("references", self.references.len())?;
        match &self.sealed {
            None if self.tlp.must_be_sealed() => Err(Error::SealingRequired { tlp: self.tlp.to_string() }),
            None => ContentView::of(self).check(&self.lang),
            Some(sealed) => sealed.validate(self),
        }
    }

    /// Checks the advisory against its origin certificate's scope.
    pub fn check_scope(&self, origin_scope: &Scope) -> Result<()> {
        if origin_scope.contains(&self.scope) {
            Ok(())
        } else {
            Err(Error::ScopeViolation {
                what: format!("advisory scope outside origin {}'s certificate", self.origin),
                scope: self.scope.to_string(),
                allowed: origin_scope.to_string(),
            })
        }
    }

    /// The exact bytes an origin signs for this advisory (compact JSON).
    pub fn to_payload(&self) -> Vec<u8> {
        crate::envelope::encode_payload(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn code(result: Result<()>) -> &'static str {
        result.err().map_or("ok", |e| e.code())
    }

    #[test]
    fn sample_validates() {
        assert_eq!(code(fixtures::sample_advisory("mhlw", 1, None).validate()), "ok");
    }

    #[test]
    fn empty_title_is_refused() {
        let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
        advisory.title = Localized::new("ja", "  ").with("en", "English only");
        assert_eq!(code(advisory.validate()), "invalid_advisory");
    }

    #[test]
    fn expiry_before_issue_is_refused() {
        let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
        advisory.expires_at = advisory.issued_at;
        let err = advisory.validate().expect_err("refused");
        assert!(err.to_string().contains("expires_at"), "{err}");
    }

    #[test]
    fn update_and_cancel_need_references() {
        for kind in [Kind::Update, Kind::Cancel] {
            let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
            advisory.kind = kind;
            let err = advisory.validate().expect_err("refused");
            assert!(err.to_string().contains("must reference"), "{err}");
            advisory.references.push(Digest::of(b"earlier"));
            assert_eq!(code(advisory.validate()), "ok");
        }
    }

    #[test]
    fn scope_outside_origin_is_refused() {
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        let tokyo = Scope::parse("jp/13").expect("scope");
        assert_eq!(code(advisory.check_scope(&tokyo)), "scope_violation");
    }

    #[test]
    fn sequence_and_prev_must_agree() {
        let advisory = fixtures::sample_advisory("mhlw", 2, None);
        assert_eq!(code(advisory.validate()), "invalid_advisory");
        let advisory = fixtures::sample_advisory("mhlw", 1, Some(Digest::of(b"x")));
        assert_eq!(code(advisory.validate()), "invalid_advisory");
    }

    #[test]
    fn cve_format() {
        assert!(is_cve("CVE-2021-20837"));
        assert!(!is_cve("CVE-21-20837"));
        assert!(!is_cve("cve-2021-20837"));
    }

    #[test]
    fn localized_fallback_prefers_japanese() {
        let text = Localized::new("en", "Hello").with("ja", "こんにちは");
        assert_eq!(text.get("fr"), "こんにちは");
        assert_eq!(text.get("en"), "Hello");
    }
}
