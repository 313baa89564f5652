//! The advisory authoring file: TOML that `kairan advisory sign` and `kairan publish` turn
//! into a signed advisory.
//!
//! It carries the advisory fields of the protocol with three conveniences: `seq` and `prev`
//! may be left out (`kairan publish` assigns them from the origin's state file; `sign`
//! defaults to seq 1), `issued_at` defaults to now, and `expires_at` may be given as
//! `valid_days` instead. Unknown keys are errors that name the key.

use serde::Deserialize;

use kairan_protocol::advisory::{Advisory, Kind, Link, Localized, Severity, Source, Status, Tlp};
use kairan_protocol::{Digest, Scope, Timestamp};

/// An advisory as an author writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisoryDraft {
    /// Origin id (the subject of the origin certificate).
    pub origin: String,
    /// Sequence number; assigned by `kairan publish` when absent.
    #[serde(default)]
    pub seq: Option<u64>,
    /// Previous advisory digest; assigned by `kairan publish` when absent.
    #[serde(default)]
    pub prev: Option<Digest>,
    /// Human id.
    pub id: String,
    /// alert | update | cancel.
    pub kind: Kind,
    /// Digests updated or cancelled.
    #[serde(default)]
    pub references: Vec<Digest>,
    /// actual | exercise | test.
    pub status: Status,
    /// Defaults to now.
    #[serde(default)]
    pub issued_at: Option<Timestamp>,
    /// Either this or `valid_days`.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Days of validity from `issued_at` (default 30).
    #[serde(default)]
    pub valid_days: Option<u32>,
    /// TLP label.
    pub tlp: Tlp,
    /// Handling note.
    pub handling: String,
    /// Region.
    pub scope: Scope,
    /// Severity.
    pub severity: Severity,
    /// Categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// CVE ids.
    #[serde(default)]
    pub cves: Vec<String>,
    /// Primary language.
    #[serde(default = "default_lang")]
    pub lang: String,
    /// Title.
    pub title: Localized,
    /// Summary.
    pub summary: Localized,
    /// Body.
    pub body: Localized,
    /// Action items.
    #[serde(default)]
    pub items: Vec<Localized>,
    /// Links.
    #[serde(default)]
    pub links: Vec<Link>,
    /// Contact.
    #[serde(default)]
    pub contact: Option<Localized>,
    /// Upstream attribution.
    #[serde(default)]
    pub source: Option<Source>,
}

fn default_lang() -> String {
    "ja".into()
}

impl AdvisoryDraft {
    /// Parses the TOML text; errors name the offending key and line.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The advisory, with `now` for a missing `issued_at` and `chain` (seq, prev) overriding
    /// the file's values when given. The result is validated.
    pub fn into_advisory(
        self,
        now: Timestamp,
        chain: Option<(u64, Option<Digest>)>,
    ) -> Result<Advisory, String> {
        let advisory = self.into_clear(now, chain)?;
        if let Some(refusal) = sealing_unavailable(advisory.tlp) {
            return Err(refusal);
        }
        advisory.validate().map_err(|e| e.to_string())?;
        Ok(advisory)
    }

    /// [`Self::into_advisory`] for a TLP:RED or TLP:AMBER+STRICT advisory, sealed to `to` with
    /// `rng` (`kairan publish --seal-to`); refuses the labels that travel in clear.
    pub fn into_sealed_advisory(
        self,
        now: Timestamp,
        chain: Option<(u64, Option<Digest>)>,
        to: &[kairan_protocol::sealed::To<'_>],
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<Advisory, String> {
        let advisory = self.into_clear(now, chain)?;
        if !advisory.tlp.must_be_sealed() {
            return Err(format!(
                "--seal-to/--seal-to-scope seal TLP:RED and TLP:AMBER+STRICT advisories; this one is {}",
                advisory.tlp
            ));
        }
        let sealed = kairan_protocol::sealed::seal(&advisory, to, rng).map_err(|e| e.to_string())?;
        sealed.validate().map_err(|e| e.to_string())?;
        Ok(sealed)
    }

    /// The advisory in clear, unvalidated (sealing comes after: it binds every field).
    fn into_clear(self, now: Timestamp, chain: Option<(u64, Option<Digest>)>) -> Result<Advisory, String> {
        let issued_at = self.issued_at.unwrap_or(now);
        let expires_at = match (self.expires_at, self.valid_days) {
            (Some(_), Some(_)) => return Err("give either expires_at or valid_days, not both".into()),
            (Some(at), None) => at,
            (None, days) => issued_at.plus_secs(i64::from(days.unwrap_or(30)) * 24 * 3600),
        };
        let (seq, prev) = chain.unwrap_or((self.seq.unwrap_or(1), self.prev));
        let advisory = Advisory {
            origin: self.origin,
            seq,
            prev,
            id: self.id,
            kind: self.kind,
            references: self.references,
            status: self.status,
            issued_at,
            expires_at,
            tlp: self.tlp,
            handling: self.handling,
            scope: self.scope,
            severity: self.severity,
            categories: self.categories,
            cves: self.cves,
            lang: self.lang,
            title: self.title,
            summary: self.summary,
            body: self.body,
            items: self.items,
            links: self.links,
            contact: self.contact,
            source: self.source,
            sealed: None,
        };
        Ok(advisory)
    }
}

/// Why an advisory labelled `tlp` cannot be made from an authoring file or an imported document,
/// for people: TLP:RED and TLP:AMBER+STRICT advisories travel only sealed (encrypted end to end
/// to their recipients, issue 8; the protocol's `sealing_required` rule), and the command line
/// cannot seal yet. `None` for the labels that travel in clear.
pub fn sealing_unavailable(tlp: Tlp) -> Option<String> {
    match tlp {
        Tlp::Red => Some(
            "TLP:RED advisories must be sealed to named recipients (issue 8): publish it with \
             kairan publish --seal-to CLINIC_ID (repeatable)"
                .to_owned(),
        ),
        Tlp::AmberStrict => Some(
            "TLP:AMBER+STRICT advisories must be sealed to their recipients (issue 8): publish it \
             with kairan publish --seal-to CLINIC_ID or --seal-to-scope DISTRICT_SCOPE"
                .to_owned(),
        ),
        Tlp::Clear | Tlp::Green | Tlp::Amber => None,
    }
}

/// The template printed by `kairan advisory template`: valid as it stands.
pub const TEMPLATE: &str = include_str!("../../samples/template.toml");

/// The three sample advisories shipped with kairan (used by `kairan demo`).
pub const SAMPLES: [(&str, &str); 3] = [
    ("ransomware", include_str!("../../samples/01-ransomware.toml")),
    ("emotet", include_str!("../../samples/02-emotet.toml")),
    ("movable-type", include_str!("../../samples/03-movable-type.toml")),
];

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_ms(1_638_349_200_000);

    #[test]
    fn template_and_samples_are_valid() {
        for (name, text) in std::iter::once(("template", TEMPLATE)).chain(SAMPLES) {
            let draft = AdvisoryDraft::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let advisory = draft.into_advisory(NOW, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!advisory.title.get("ja").is_empty(), "{name} has a Japanese title");
            assert!(!advisory.title.get("en").is_empty(), "{name} has an English title");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let text = TEMPLATE.replace("severity =", "severty =");
        let err = AdvisoryDraft::parse(&text).expect_err("refused");
        assert!(err.contains("severty"), "{err}");
    }

    #[test]
    fn red_and_amber_strict_are_refused_naming_the_sealing_rule() {
        for (label, tlp) in [("RED", Tlp::Red), ("AMBER+STRICT", Tlp::AmberStrict)] {
            let text = TEMPLATE.replace("tlp = \"AMBER\"", &format!("tlp = \"{label}\""));
            let draft = AdvisoryDraft::parse(&text).expect("parses");
            assert_eq!(draft.tlp, tlp);
            let err = draft.into_advisory(NOW, None).expect_err("refused");
            assert!(err.starts_with(&format!("TLP:{label} advisories must be sealed")), "{err}");
            assert!(err.contains("issue 8") && err.contains("kairan publish --seal-to"), "{err}");
        }
        let text = TEMPLATE.replace("tlp = \"AMBER\"", "tlp = \"GREEN\"");
        let advisory = AdvisoryDraft::parse(&text).expect("parses").into_advisory(NOW, None).expect("valid");
        assert_eq!(advisory.tlp, Tlp::Green);
    }

    #[test]
    fn publish_chain_overrides_file() {
        let draft = AdvisoryDraft::parse(TEMPLATE).expect("parses");
        let prev = Digest::of(b"previous");
        let advisory = draft.into_advisory(NOW, Some((7, Some(prev)))).expect("valid");
        assert_eq!((advisory.seq, advisory.prev), (7, Some(prev)));
    }
}
