//! CSAF 2.0 and 2.1 export (`document` profile `csaf_base`).
//!
//! Built as `serde_json` values against the official schemas (which the tests and
//! `scripts/validate-formats.sh` validate every export with), not hand-typed structs; see
//! `docs/formats.md` for why the `csaf-rs` crate's generated types are not used at run time.
//! Keys come out sorted, so an export is byte-for-byte reproducible.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use kairan_protocol::advisory::{Advisory, Kind, Localized, Severity, Status, Tlp};
use kairan_protocol::{Digest, Scope, Timestamp};

use super::{Exported, FormatError, advisory_urn, languages, origin_urn, prefectures};

/// Which CSAF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    V20,
    V21,
}

/// `$schema` of CSAF 2.1 documents.
pub(super) const SCHEMA_21: &str = "https://docs.oasis-open.org/csaf/csaf/v2.1/schema/csaf.json";
/// Namespace of `aggregate_severity`: the values are CAP 1.2's.
pub(super) const SEVERITY_NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";
/// The one product: the information systems of the medical institutions in scope.
pub(super) const PRODUCT_ID: &str = "KAIRAN-SCOPE";
/// Title of the note carrying the fields CSAF has no place for.
pub(super) const KAIRAN_NOTE: &str = "kairan";
/// Summary of the acknowledgment that carries `source`.
pub(super) const SOURCE_ACK: &str = "upstream source (kairan)";
const TLP_URL: &str = "https://www.first.org/tlp/";

/// The advisory fields CSAF cannot carry, as JSON in the `kairan` note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KairanFields {
    pub kind: Kind,
    pub status: Status,
    pub expires_at: Timestamp,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<kairan_protocol::Digest>,
    /// The exact label, when the CSAF label is not (AMBER+STRICT in CSAF 2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlp: Option<Tlp>,
}

/// `tracking.version`: semantic versioning `1.<seq>.0`, so that later advisories of an origin
/// (an update reusing an id) always carry a higher version.
pub(super) fn version_of(seq: u64) -> String {
    format!("1.{seq}.0")
}

/// The origin sequence number in a `1.<seq>.0` version.
pub(super) fn seq_of(version: &str) -> Option<u64> {
    version.strip_prefix("1.")?.strip_suffix(".0")?.parse().ok().filter(|seq| *seq > 0)
}

/// The CSAF label of a TLP 2.0 label, and whether it is exact.
pub(super) fn tlp_label(tlp: Tlp, version: Version) -> (&'static str, bool) {
    match (tlp, version) {
        (Tlp::Clear, Version::V20) => ("WHITE", true),
        (Tlp::Clear, Version::V21) => ("CLEAR", true),
        (Tlp::Green, _) => ("GREEN", true),
        (Tlp::Amber, _) => ("AMBER", true),
        (Tlp::AmberStrict, Version::V20) => ("AMBER", false),
        (Tlp::AmberStrict, Version::V21) => ("AMBER+STRICT", true),
        (Tlp::Red, _) => ("RED", true),
    }
}

/// `alert`, `update`, `cancel`.
pub(super) fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Alert => "alert",
        Kind::Update => "update",
        Kind::Cancel => "cancel",
    }
}

/// CAP 1.2 severity words, as in `aggregate_severity.text`.
pub(super) fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Unknown => "Unknown",
        Severity::Minor => "Minor",
        Severity::Moderate => "Moderate",
        Severity::Severe => "Severe",
        Severity::Extreme => "Extreme",
    }
}

/// Note titles for localized fields: `Summary (ja)`, `Item 3 (en)`.
pub(super) fn note_title(key: &str, lang: &str) -> String {
    format!("{key} ({lang})")
}

fn push_notes(
    notes: &mut Vec<Value>,
    key: &str,
    category: &str,
    text: &Localized,
    lang: &str,
    skip: Option<&str>,
) {
    for (l, t) in languages(text, lang) {
        if Some(l) != skip && !t.is_empty() {
            notes.push(json!({"category": category, "title": note_title(key, l), "text": t}));
        }
    }
}

pub(super) fn export(
    advisory: &Advisory,
    digest: &Digest,
    version: Version,
) -> Result<Exported, FormatError> {
    let lang = advisory.lang.as_str();
    let (label, exact) = tlp_label(advisory.tlp, version);
    let mut warnings = Vec::new();
    let mut distribution_text = advisory.handling.clone();
    if !exact {
        warnings.push(format!(
            "CSAF 2.0 has no {}: exported as TLP label {label} with the exact label in distribution.text and the kairan note; use --format csaf-2.1 to keep it",
            advisory.tlp
        ));
        distribution_text = format!("{}. {distribution_text}", advisory.tlp);
    }
    let mut distribution = json!({"tlp": {"label": label, "url": TLP_URL}});
    if !distribution_text.trim().is_empty() {
        distribution["text"] = json!(distribution_text);
    }

    let mut notes = Vec::new();
    push_notes(&mut notes, "Summary", "summary", &advisory.summary, lang, None);
    push_notes(&mut notes, "Body", "description", &advisory.body, lang, None);
    push_notes(&mut notes, "Title", "general", &advisory.title, lang, Some(lang));
    if let Some(contact) = &advisory.contact {
        push_notes(
            &mut notes,
            "Contact",
            "general",
            contact,
            lang,
            contact.0.contains_key(lang).then_some(lang),
        );
    }
    for (n, item) in advisory.items.iter().enumerate() {
        push_notes(&mut notes, &format!("Item {}", n + 1), "general", item, lang, Some(lang));
    }
    for (n, link) in advisory.links.iter().enumerate() {
        push_notes(&mut notes, &format!("Link {}", n + 1), "general", &link.label, lang, Some(lang));
    }
    let fields = KairanFields {
        kind: advisory.kind,
        status: advisory.status,
        expires_at: advisory.expires_at,
        scope: advisory.scope.clone(),
        categories: advisory.categories.clone(),
        prev: advisory.prev,
        tlp: (!exact).then_some(advisory.tlp),
    };
    let fields_json = serde_json::to_string_pretty(&fields)
        .map_err(|e| FormatError::new("csaf", "document.notes[kairan]", e.to_string()))?;
    notes.push(json!({
        "category": "other",
        "title": KAIRAN_NOTE,
        "audience": "kairan relays and tools",
        "text": fields_json,
    }));

    let mut references = vec![json!({
        "category": "self",
        "summary": "this advisory in kairan (SHA-256 digest of its signed payload)",
        "url": advisory_urn(digest),
    })];
    for link in &advisory.links {
        let summary =
            link.label.0.get(lang).filter(|s| !s.is_empty()).map_or(link.url.as_str(), String::as_str);
        references.push(json!({"category": "external", "summary": summary, "url": link.url}));
    }
    let verb = if advisory.kind == Kind::Cancel { "cancelled" } else { "updated" };
    for reference in &advisory.references {
        references.push(json!({
            "category": "external",
            "summary": format!("kairan advisory {verb} by this one"),
            "url": advisory_urn(reference),
        }));
    }

    let mut publisher = json!({"category": "coordinator", "name": advisory.origin, "namespace": origin_urn(&advisory.origin)});
    if let Some(contact) = advisory.contact.as_ref().and_then(|c| c.0.get(lang)).filter(|c| !c.is_empty()) {
        publisher["contact_details"] = json!(contact);
    }
    let issued = advisory.issued_at.to_rfc3339();
    let version_number = version_of(advisory.seq);
    let mut document = json!({
        "category": "csaf_base",
        "csaf_version": if version == Version::V20 { "2.0" } else { "2.1" },
        "distribution": distribution,
        "lang": lang,
        "title": advisory.title.get(lang),
        "publisher": publisher,
        "aggregate_severity": {"namespace": SEVERITY_NAMESPACE, "text": severity_word(advisory.severity)},
        "notes": notes,
        "references": references,
        "tracking": {
            "id": advisory.id,
            "version": version_number,
            "status": "final",
            "initial_release_date": issued,
            "current_release_date": issued,
            "revision_history": [{
                "date": issued,
                "number": version_number,
                "summary": format!("kairan {} of origin {}, seq {}", kind_word(advisory.kind), advisory.origin, advisory.seq),
            }],
            "generator": {"engine": {"name": "kairan", "version": env!("CARGO_PKG_VERSION")}},
        },
    });
    if let Some(source) = &advisory.source {
        let mut ack = json!({"organization": source.name, "summary": SOURCE_ACK});
        if let Some(url) = &source.url {
            ack["urls"] = json!([url]);
        }
        document["acknowledgments"] = json!([ack]);
    }

    let mut csaf = json!({"document": document});
    if version == Version::V21 {
        csaf["$schema"] = json!(SCHEMA_21);
    }
    let remediations: Vec<Value> = advisory
        .items
        .iter()
        .map(|item| json!({"category": "mitigation", "details": item.get(lang), "product_ids": [PRODUCT_ID]}))
        .collect();
    let vulnerabilities: Vec<Value> = if !advisory.cves.is_empty() {
        advisory.cves.iter().map(|cve| json!({"cve": cve, "remediations": remediations})).collect()
    } else if !remediations.is_empty() {
        vec![json!({"title": advisory.title.get(lang), "remediations": remediations})]
    } else {
        Vec::new()
    };
    if !vulnerabilities.is_empty() {
        csaf["vulnerabilities"] = json!(vulnerabilities);
        csaf["product_tree"] = json!({"full_product_names": [{"name": product_name(&advisory.scope, lang), "product_id": PRODUCT_ID}]});
    }
    let text = serde_json::to_string_pretty(&csaf)
        .map_err(|e| FormatError::new("csaf", "document", e.to_string()))?;
    Ok(Exported { text: text + "\n", warnings })
}

fn product_name(scope: &Scope, lang: &str) -> String {
    let area = prefectures::area_name(scope, lang);
    if prefectures::is_japanese(lang) {
        format!("{area}の医療機関の情報システム")
    } else {
        format!("Information systems of medical institutions in {area}")
    }
}

#[cfg(test)]
mod tests {
    use kairan_protocol::fixtures;

    use super::*;

    fn exported(advisory: &Advisory, version: Version) -> (Value, Vec<String>) {
        let out = export(advisory, &Digest::of(&advisory.to_payload()), version).expect("export");
        (serde_json::from_str(&out.text).expect("json"), out.warnings)
    }

    #[test]
    fn tracking_tlp_and_cves() {
        let advisory = fixtures::sample_advisory("mhlw", 3, Some(Digest::of(b"prev")));
        let (csaf, warnings) = exported(&advisory, Version::V20);
        assert!(warnings.is_empty());
        let tracking = &csaf["document"]["tracking"];
        assert_eq!(tracking["id"], "mhlw-test-3");
        assert_eq!(tracking["version"], "1.3.0");
        assert_eq!(tracking["revision_history"][0]["number"], "1.3.0");
        assert_eq!(tracking["initial_release_date"], "2021-12-01T09:00:00.000Z");
        assert_eq!(csaf["document"]["distribution"]["tlp"]["label"], "AMBER");
        assert_eq!(csaf["vulnerabilities"][0]["cve"], "CVE-2021-20837");
        assert_eq!(csaf["vulnerabilities"][0]["remediations"][0]["details"], "VPN機器を更新する");
        assert_eq!(csaf["product_tree"]["full_product_names"][0]["name"], "日本全国の医療機関の情報システム");
        assert!(csaf.get("$schema").is_none());
    }

    #[test]
    fn amber_strict_is_exact_in_21_and_flagged_in_20() {
        let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
        advisory.tlp = Tlp::AmberStrict;
        let (csaf, warnings) = exported(&advisory, Version::V20);
        assert_eq!(csaf["document"]["distribution"]["tlp"]["label"], "AMBER");
        assert_eq!(warnings.len(), 1);
        let text = csaf["document"]["distribution"]["text"].as_str().unwrap_or_default();
        assert!(text.starts_with("TLP:AMBER+STRICT. "), "{text}");
        let (csaf, warnings) = exported(&advisory, Version::V21);
        assert_eq!(csaf["document"]["distribution"]["tlp"]["label"], "AMBER+STRICT");
        assert_eq!(csaf["$schema"], SCHEMA_21);
        assert!(warnings.is_empty());
        advisory.tlp = Tlp::Clear;
        assert_eq!(exported(&advisory, Version::V20).0["document"]["distribution"]["tlp"]["label"], "WHITE");
    }

    #[test]
    fn versions() {
        assert_eq!(seq_of(&version_of(42)), Some(42));
        assert_eq!(seq_of("2"), None);
        assert_eq!(seq_of("1.0.0"), None);
        assert_eq!(seq_of("1.2.3"), None);
    }

    #[test]
    fn export_is_reproducible() {
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        let digest = Digest::of(&advisory.to_payload());
        let one = export(&advisory, &digest, Version::V21).expect("export");
        assert_eq!(export(&advisory, &digest, Version::V21).expect("export"), one);
    }
}
