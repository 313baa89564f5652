//! The confidential part of an advisory: what a sealed advisory carries only encrypted.
//!
//! Relays route, store and verify an advisory by its cleartext metadata (origin, `seq`,
//! `prev`, `id`, kind, references, status, times, TLP, handling note, scope, severity,
//! language). Everything a reader learns the threat from — title, summary, body, action
//! items, links, contact, source, categories and CVE ids — is [`Confidential`]: in a sealed
//! advisory these fields are empty and the encrypted JSON of a `Confidential` replaces them.

use serde::{Deserialize, Serialize};

use crate::advisory::{Advisory, Link, Localized, Source, check_list, check_short, invalid, is_cve};
use crate::error::Result;
use crate::limits::{MAX_BODY_CHARS, MAX_SHORT_TEXT_CHARS, MAX_SUMMARY_CHARS, MAX_TITLE_CHARS};

/// The confidential fields of an advisory (the plaintext of a sealed advisory, as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confidential {
    /// Title.
    pub title: Localized,
    /// One-paragraph summary.
    #[serde(default)]
    pub summary: Localized,
    /// Full text.
    #[serde(default)]
    pub body: Localized,
    /// Action items / countermeasures, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Localized>,
    /// Further reading.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Whom to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Localized>,
    /// Upstream attribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Free categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// CVE identifiers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cves: Vec<String>,
}

impl Confidential {
    /// The confidential fields of `advisory` (cloned).
    pub fn of(advisory: &Advisory) -> Self {
        Self {
            title: advisory.title.clone(),
            summary: advisory.summary.clone(),
            body: advisory.body.clone(),
            items: advisory.items.clone(),
            links: advisory.links.clone(),
            contact: advisory.contact.clone(),
            source: advisory.source.clone(),
            categories: advisory.categories.clone(),
            cves: advisory.cves.clone(),
        }
    }

    /// Whether every field is empty (what a sealed advisory carries in clear).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `advisory` with these fields written into it (and its `sealed` object kept): the whole
    /// advisory as its recipients read it. For display and storage by a recipient only; the
    /// result is not what the origin signed.
    pub fn reveal(&self, advisory: &Advisory) -> Advisory {
        let mut full = advisory.clone();
        self.clone().write_into(&mut full);
        full
    }

    /// Moves these fields into `advisory`.
    pub(crate) fn write_into(self, advisory: &mut Advisory) {
        advisory.title = self.title;
        advisory.summary = self.summary;
        advisory.body = self.body;
        advisory.items = self.items;
        advisory.links = self.links;
        advisory.contact = self.contact;
        advisory.source = self.source;
        advisory.categories = self.categories;
        advisory.cves = self.cves;
    }

    /// The content rules of the advisory format (`lang` is the advisory's primary language,
    /// in which the title must be present).
    pub fn validate(&self, lang: &str) -> Result<()> {
        ContentView {
            title: &self.title,
            summary: &self.summary,
            body: &self.body,
            items: &self.items,
            links: &self.links,
            contact: self.contact.as_ref(),
            source: self.source.as_ref(),
            categories: &self.categories,
            cves: &self.cves,
        }
        .check(lang)
    }
}

/// The confidential fields of an advisory or a [`Confidential`], borrowed (so that validating
/// a cleartext advisory copies nothing).
pub(crate) struct ContentView<'a> {
    pub title: &'a Localized,
    pub summary: &'a Localized,
    pub body: &'a Localized,
    pub items: &'a [Localized],
    pub links: &'a [Link],
    pub contact: Option<&'a Localized>,
    pub source: Option<&'a Source>,
    pub categories: &'a [String],
    pub cves: &'a [String],
}

impl<'a> ContentView<'a> {
    /// The confidential fields of `advisory`.
    pub(crate) fn of(advisory: &'a Advisory) -> Self {
        Self {
            title: &advisory.title,
            summary: &advisory.summary,
            body: &advisory.body,
            items: &advisory.items,
            links: &advisory.links,
            contact: advisory.contact.as_ref(),
            source: advisory.source.as_ref(),
            categories: &advisory.categories,
            cves: &advisory.cves,
        }
    }

    /// Whether every field is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.title.0.is_empty()
            && self.summary.0.is_empty()
            && self.body.0.is_empty()
            && self.items.is_empty()
            && self.links.is_empty()
            && self.contact.is_none()
            && self.source.is_none()
            && self.categories.is_empty()
            && self.cves.is_empty()
    }

    pub(crate) fn check(&self, lang: &str) -> Result<()> {
        self.title.check("title", MAX_TITLE_CHARS)?;
        if self.title.0.get(lang).is_none_or(|t| t.trim().is_empty()) {
            return Err(invalid(format!("title is empty in the primary language {lang:?}")));
        }
        self.summary.check("summary", MAX_SUMMARY_CHARS)?;
        self.body.check("body", MAX_BODY_CHARS)?;
        for (field, list_len) in [
            ("categories", self.categories.len()),
            ("cves", self.cves.len()),
            ("items", self.items.len()),
            ("links", self.links.len()),
        ] {
            check_list(field, list_len)?;
        }
        for category in self.categories {
            check_short("categories", category)?;
        }
        if let Some(bad) = self.cves.iter().find(|cve| !is_cve(cve)) {
            return Err(invalid(format!("{bad:?} is not a CVE id (CVE-YYYY-NNNN)")));
        }
        for item in self.items {
            item.check("items", MAX_SHORT_TEXT_CHARS)?;
        }
        for link in self.links {
            check_short("links.url", &link.url)?;
            if !link.url.starts_with("https://") && !link.url.starts_with("http://") {
                return Err(invalid(format!("link {:?} is not an http(s) URL", link.url)));
            }
            link.label.check("links.label", MAX_SHORT_TEXT_CHARS)?;
        }
        if let Some(contact) = self.contact {
            contact.check("contact", MAX_SHORT_TEXT_CHARS)?;
        }
        if let Some(source) = self.source {
            check_short("source.name", &source.name)?;
            check_short("source.url", source.url.as_deref().unwrap_or(""))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn of_then_reveal_gives_the_advisory_back() {
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        let content = Confidential::of(&advisory);
        assert!(!content.is_empty());
        let mut stripped = advisory.clone();
        Confidential::default().write_into(&mut stripped);
        assert!(Confidential::of(&stripped).is_empty());
        assert_eq!(content.reveal(&stripped), advisory);
    }

    #[test]
    fn content_rules_apply() {
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        let mut content = Confidential::of(&advisory);
        content.validate("ja").expect("valid");
        assert_eq!(content.validate("fr").map_err(|e| e.code()), Err("invalid_advisory"));
        content.cves.push("CVE-1".into());
        assert_eq!(content.validate("ja").map_err(|e| e.code()), Err("invalid_advisory"));
    }

    #[test]
    fn json_omits_empty_lists_and_refuses_unknown_fields() {
        let content = Confidential { title: Localized::new("ja", "題"), ..Confidential::default() };
        let json = serde_json::to_string(&content).expect("json");
        assert_eq!(json, r#"{"title":{"ja":"題"},"summary":{},"body":{}}"#);
        assert!(serde_json::from_str::<Confidential>(r#"{"title":{},"x":1}"#).is_err());
    }
}
