//! Advisories in the formats the associations' tools already read: CSAF 2.0 / 2.1 (JSON),
//! CAP 1.2 (XML) and STIX 2.1 (JSON bundle).
//!
//! Everything here is a pure function of its input: [`load`] turns a signed envelope, a
//! delivery or an authoring file into an [`Advisory`] and its digest, [`export`] renders it,
//! [`import`] reads CSAF or CAP back into an [`Advisory`] and [`draft_toml`] writes that as an
//! authoring file ready for `kairan advisory sign`. `docs/formats.md` has the field-by-field
//! mapping tables and what each format loses. The command line lives in [`command`].
//!
//! Exports are deterministic: the same advisory gives the same bytes (JSON keys sorted, STIX
//! ids are UUIDv5 of the advisory digest, no clock is read).

use std::fmt;
use std::str::FromStr;

use kairan_protocol::Digest;
use kairan_protocol::advisory::{Advisory, Localized};

mod cap;
mod cap_import;
mod csaf;
mod csaf_import;
mod input;
pub(crate) mod prefectures;
mod stix;
mod xml;

pub mod command;

pub use input::{Loaded, load};

/// An output or input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSAF 2.0 (`--format csaf` or `csaf-2.0`).
    Csaf20,
    /// CSAF 2.1 (`--format csaf-2.1`): TLP 2.0 labels, `$schema`.
    Csaf21,
    /// CAP 1.2 XML (`--format cap`).
    Cap,
    /// STIX 2.1 bundle (`--format stix`), export only.
    Stix,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "csaf" | "csaf-2.0" | "csaf2.0" => Ok(Format::Csaf20),
            "csaf-2.1" | "csaf2.1" => Ok(Format::Csaf21),
            "cap" | "cap-1.2" => Ok(Format::Cap),
            "stix" | "stix-2.1" => Ok(Format::Stix),
            other => Err(format!("unknown format {other:?}: use csaf, csaf-2.1, cap or stix")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csaf20 => "csaf",
            Format::Csaf21 => "csaf-2.1",
            Format::Cap => "cap",
            Format::Stix => "stix",
        })
    }
}

/// Why a conversion failed; `field` names the place in the document (a JSON path or a CAP
/// element path) or in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format}: {field}: {reason}")]
pub struct FormatError {
    /// `csaf`, `cap`, `stix` or `input`.
    pub format: &'static str,
    /// Where in the document.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl FormatError {
    pub(crate) fn new(format: &'static str, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { format, field: field.into(), reason: reason.into() }
    }

    pub(crate) fn missing(format: &'static str, field: impl Into<String>) -> Self {
        Self::new(format, field, "missing")
    }
}

/// An export: the document text and notes on what the format could not say exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The document (JSON or XML), ending in a newline.
    pub text: String,
    /// Losses worth telling the user about (e.g. TLP:AMBER+STRICT in CSAF 2.0).
    pub warnings: Vec<String>,
}

/// Renders `advisory` (whose digest is `digest`) in `format`.
pub fn export(advisory: &Advisory, digest: &Digest, format: Format) -> Result<Exported, FormatError> {
    if advisory.sealed.is_some() {
        return Err(FormatError::new(
            format_name(format),
            "sealed",
            format!(
                "{} advisory {} is sealed (encrypted to its recipients, issue 8): its content cannot be \
                 exported; opening sealed advisories is not available yet",
                advisory.tlp, advisory.id
            ),
        ));
    }
    match format {
        Format::Csaf20 => csaf::export(advisory, digest, csaf::Version::V20),
        Format::Csaf21 => csaf::export(advisory, digest, csaf::Version::V21),
        Format::Cap => Ok(Exported { text: cap::export(advisory, digest), warnings: Vec::new() }),
        Format::Stix => stix::export(advisory, digest),
    }
}

/// An import: the advisory and the fields the document did not carry, which were defaulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The advisory, validated.
    pub advisory: Advisory,
    /// Names of advisory fields filled with a default (to be reviewed before signing).
    pub defaulted: Vec<&'static str>,
}

/// Reads a CSAF (2.0 or 2.1, either `--format csaf` value) or CAP 1.2 document.
pub fn import(text: &str, format: Format) -> Result<Imported, FormatError> {
    let imported = match format {
        Format::Csaf20 | Format::Csaf21 => csaf_import::import(text)?,
        Format::Cap => cap_import::import(text)?,
        Format::Stix => return Err(FormatError::new("stix", "--format", "STIX is export only")),
    };
    // A document marked TLP:RED or AMBER+STRICT cannot become an advisory in clear (issue 8):
    // say so plainly rather than as a generic validation failure.
    if let (None, Some(refusal)) =
        (&imported.advisory.sealed, crate::draft::sealing_unavailable(imported.advisory.tlp))
    {
        return Err(FormatError::new(format_name(format), "tlp", refusal));
    }
    imported
        .advisory
        .validate()
        .map_err(|e| FormatError::new(format_name(format), "advisory", e.to_string()))?;
    Ok(imported)
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Csaf20 | Format::Csaf21 => "csaf",
        Format::Cap => "cap",
        Format::Stix => "stix",
    }
}

/// The languages of a localized text, the primary language first, the others in tag order.
pub(crate) fn languages<'a>(text: &'a Localized, primary: &str) -> Vec<(&'a str, &'a str)> {
    let first = text.0.get_key_value(primary).map(|(l, t)| (l.as_str(), t.as_str()));
    first
        .into_iter()
        .chain(text.0.iter().filter(|(l, _)| *l != primary).map(|(l, t)| (l.as_str(), t.as_str())))
        .collect()
}

/// The URN naming an advisory by digest: `urn:kairan:advisory:sha256:<hex>`.
pub(crate) fn advisory_urn(digest: &Digest) -> String {
    format!("urn:kairan:advisory:{digest}")
}

/// The digest named by [`advisory_urn`], if `text` is one.
pub(crate) fn parse_advisory_urn(text: &str) -> Option<Result<Digest, String>> {
    text.strip_prefix("urn:kairan:advisory:").map(Digest::parse)
}

/// The URN naming an origin: `urn:kairan:origin:<id>`.
pub(crate) fn origin_urn(origin: &str) -> String {
    format!("urn:kairan:origin:{origin}")
}

/// An origin id made from a foreign publisher's name: lowercase letters, digits, `-`.
pub(crate) fn origin_from_name(name: &str) -> String {
    let mut id: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    let id = id.trim_matches('-');
    if id.is_empty() { "imported".to_owned() } else { id.chars().take(64).collect() }
}

/// The authoring file (TOML) for `advisory`, with a header saying where it came from and which
/// fields were `defaulted` (absent from the imported document) and should be reviewed.
pub fn draft_toml(advisory: &Advisory, from: &str, defaulted: &[&str]) -> Result<String, String> {
    let body = toml::to_string_pretty(advisory).map_err(|e| format!("writing TOML: {e}"))?;
    let mut out = format!(
        "# kairan advisory authoring file, imported from {from} by `kairan advisory import`.\n\
         # Review it, then: kairan advisory sign --key keys/ORIGIN.key THIS_FILE\n\
         # (`kairan publish` assigns seq and prev from the origin's state instead of the values here.)\n"
    );
    if !defaulted.is_empty() {
        out.push_str(&format!(
            "# Not in the {from} document, defaulted (check them): {}\n",
            defaulted.join(", ")
        ));
    }
    out.push('\n');
    out.push_str(&body);
    Ok(out)
}

#[cfg(test)]
mod roundtrip;

#[cfg(test)]
mod tests {
    use kairan_protocol::{Timestamp, fixtures};

    use super::*;
    use crate::draft::{AdvisoryDraft, SAMPLES};

    #[test]
    fn format_names() {
        assert_eq!("csaf".parse(), Ok(Format::Csaf20));
        assert_eq!("CSAF-2.1".parse(), Ok(Format::Csaf21));
        assert_eq!("cap".parse(), Ok(Format::Cap));
        assert_eq!("stix".parse(), Ok(Format::Stix));
        let err = "cvrf".parse::<Format>().expect_err("refused");
        assert!(err.contains("cvrf"), "{err}");
        for format in [Format::Csaf20, Format::Csaf21, Format::Cap, Format::Stix] {
            assert_eq!(format.to_string().parse(), Ok(format));
        }
    }

    #[test]
    fn primary_language_first() {
        let text = Localized::new("en", "Hello").with("ja", "こんにちは").with("de", "Hallo");
        let langs: Vec<&str> = languages(&text, "ja").into_iter().map(|(l, _)| l).collect();
        assert_eq!(langs, ["ja", "de", "en"]);
    }

    #[test]
    fn urns() {
        let digest = Digest::of(b"x");
        let urn = advisory_urn(&digest);
        assert_eq!(parse_advisory_urn(&urn), Some(Ok(digest)));
        assert_eq!(parse_advisory_urn("https://example.com"), None);
        assert!(matches!(parse_advisory_urn("urn:kairan:advisory:md5:00"), Some(Err(_))));
    }

    #[test]
    fn origin_ids_from_names() {
        assert_eq!(origin_from_name("Example Company ProductCERT"), "example-company-productcert");
        assert_eq!(origin_from_name("厚生労働省"), "imported");
        assert_eq!(origin_from_name("JPCERT/CC"), "jpcert-cc");
    }

    #[test]
    fn written_draft_reads_back_identically() {
        let now = Timestamp::from_unix_ms(0);
        let mut advisories =
            vec![fixtures::sample_advisory("mhlw", 2, Some(kairan_protocol::Digest::of(b"p")))];
        for (name, text) in SAMPLES {
            let draft = AdvisoryDraft::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            advisories.push(draft.into_advisory(now, None).unwrap_or_else(|e| panic!("{name}: {e}")));
        }
        for advisory in advisories {
            let text = draft_toml(&advisory, "CSAF", &["scope"]).expect("toml");
            assert!(text.contains("defaulted (check them): scope"), "{text}");
            let back = AdvisoryDraft::parse(&text).and_then(|d| d.into_advisory(now, None));
            assert_eq!(back.as_ref(), Ok(&advisory), "{text}");
        }
    }
}
