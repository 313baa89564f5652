//! STIX 2.1 export: a bundle holding a `report`, the TLP 2.0 `marking-definition` it is
//! marked with, the origin's `identity`, one `vulnerability` per CVE, one `course-of-action`
//! per action item, and `language-content` objects carrying the other languages.
//!
//! Ids are UUIDv5 in a kairan namespace, named by the advisory digest (and the CVE or item
//! number), so exporting the same advisory twice gives identical bundles. The identity id is
//! named by the origin alone, with a fixed creation time, so that bundles of one origin agree.

use serde_json::{Value, json};
use uuid::Uuid;

use kairan_protocol::Digest;
use kairan_protocol::advisory::{Advisory, Localized, Tlp};

use super::csaf::kind_word;
use super::{Exported, FormatError, languages};

/// The namespace of kairan's STIX ids: UUIDv5 of `urn:kairan:stix` in the URL namespace.
pub(super) fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:kairan:stix")
}

/// The id of a STIX object of `kind` named `name`.
pub(super) fn stix_id(kind: &str, name: &str) -> String {
    format!("{kind}--{}", Uuid::new_v5(&namespace(), format!("{kind}:{name}").as_bytes()))
}

/// The TLP 2.0 marking definitions of the OASIS CTI TC (cti-stix-common-objects,
/// `extension-definition-specifications/tlp-2.0`): fixed ids, names and `tlp_2_0` values.
pub(super) fn tlp_marking(tlp: Tlp) -> Value {
    let (id, value) = match tlp {
        Tlp::Clear => ("94868c89-83c2-464b-929b-a1a8aa3c8487", "clear"),
        Tlp::Green => ("bab4a63c-aed9-4cf5-a766-dfca5abac2bb", "green"),
        Tlp::Amber => ("55d920b0-5e8b-4f79-9ee9-91f868d9b421", "amber"),
        Tlp::AmberStrict => ("939a9414-2ddd-4d32-a0cd-375ea402b003", "amber+strict"),
        Tlp::Red => ("e828b379-4e03-4974-9ac4-e53a884c97c1", "red"),
    };
    json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": format!("marking-definition--{id}"),
        "created": "2022-10-01T00:00:00.000Z",
        "name": tlp.to_string(),
        "extensions": {
            "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
                "extension_type": "property-extension",
                "tlp_2_0": value,
            }
        }
    })
}

/// The property extension carrying the advisory fields STIX has no property for, defined once
/// per origin (its id is named by the origin's identity).
fn extension_definition(identity_id: &str) -> Value {
    json!({
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": stix_id("extension-definition", &format!("kairan-advisory-1.0:{identity_id}")),
        "created_by_ref": identity_id,
        "created": IDENTITY_CREATED,
        "modified": IDENTITY_CREATED,
        "name": "kairan advisory fields",
        "description": "kind, status, severity (CAP 1.2 words), scope (region path such as jp/13), expires_at, handling and references (digests of the advisories updated or cancelled) of a kairan advisory",
        "schema": "docs/formats.md of kairan (STIX section)",
        "version": "1.0.0",
        "extension_types": ["property-extension"],
    })
}

/// The creation time of origin identities (fixed, so one origin's identity is one object).
const IDENTITY_CREATED: &str = "2021-01-01T00:00:00.000Z";

fn translations(object_id: &str, modified: &str, lang: &str, fields: &[(&str, &Localized)]) -> Option<Value> {
    let mut contents = serde_json::Map::new();
    for (name, text) in fields {
        for (l, t) in languages(text, lang).into_iter().filter(|(l, t)| *l != lang && !t.is_empty()) {
            let entry = contents.entry(l.to_owned()).or_insert_with(|| json!({}));
            entry[*name] = json!(t);
        }
    }
    (!contents.is_empty()).then(|| {
        json!({
            "type": "language-content",
            "spec_version": "2.1",
            "id": stix_id("language-content", object_id),
            "created": modified,
            "modified": modified,
            "object_ref": object_id,
            "object_modified": modified,
            "contents": contents,
        })
    })
}

pub(super) fn export(advisory: &Advisory, digest: &Digest) -> Result<Exported, FormatError> {
    let lang = advisory.lang.as_str();
    let name = digest.to_string();
    let at = advisory.issued_at.to_rfc3339();
    let marking = tlp_marking(advisory.tlp);
    let markings = json!([marking["id"]]);
    let identity_id = stix_id("identity", &advisory.origin);
    let identity = json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id,
        "created": IDENTITY_CREATED,
        "modified": IDENTITY_CREATED,
        "name": advisory.origin,
        "identity_class": "organization",
        "external_references": [{"source_name": "kairan", "external_id": super::origin_urn(&advisory.origin)}],
    });
    let mut objects = vec![marking.clone(), identity];
    let mut refs = Vec::new();
    let common = |kind: &str, key: String| {
        json!({
            "type": kind,
            "spec_version": "2.1",
            "id": stix_id(kind, &key),
            "created": at,
            "modified": at,
            "created_by_ref": identity_id,
            "object_marking_refs": markings,
        })
    };
    for cve in &advisory.cves {
        let mut vulnerability = common("vulnerability", format!("{name}:{cve}"));
        vulnerability["name"] = json!(cve);
        vulnerability["external_references"] = json!([{"source_name": "cve", "external_id": cve}]);
        refs.push(vulnerability["id"].clone());
        objects.push(vulnerability);
    }
    let mut translated = Vec::new();
    for (n, item) in advisory.items.iter().enumerate() {
        let mut action = common("course-of-action", format!("{name}:item:{}", n + 1));
        action["name"] = json!(item.get(lang));
        let id = action["id"].as_str().unwrap_or_default().to_owned();
        translated.extend(translations(&id, &at, lang, &[("name", item)]));
        refs.push(action["id"].clone());
        objects.push(action);
    }

    let mut report = common("report", name.clone());
    let description = [advisory.summary.get(lang), advisory.body.get(lang)]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    report["name"] = json!(advisory.title.get(lang));
    report["description"] = json!(description);
    report["published"] = json!(at);
    report["lang"] = json!(lang);
    let mut types = vec!["threat-report"];
    if !advisory.cves.is_empty() {
        types.push("vulnerability");
    }
    report["report_types"] = json!(types);
    if !advisory.categories.is_empty() {
        report["labels"] = json!(advisory.categories);
    }
    let mut external = vec![
        json!({"source_name": "kairan", "external_id": name, "description": "SHA-256 digest of the signed kairan advisory"}),
    ];
    external.push(json!({"source_name": advisory.origin, "external_id": advisory.id}));
    for link in &advisory.links {
        external.push(json!({"source_name": link.label.get(lang), "url": link.url}));
    }
    if let Some(source) = &advisory.source {
        let mut reference = json!({"source_name": source.name, "description": "upstream source"});
        if let Some(url) = &source.url {
            reference["url"] = json!(url);
        }
        external.push(reference);
    }
    report["external_references"] = json!(external);
    if refs.is_empty() {
        refs.push(json!(identity_id));
    }
    report["object_refs"] = json!(refs);
    let mut fields = json!({
        "extension_type": "property-extension",
        "kind": kind_word(advisory.kind),
        "status": advisory.status,
        "severity": advisory.severity,
        "scope": advisory.scope.to_string(),
        "expires_at": advisory.expires_at.to_rfc3339(),
        "handling": advisory.handling,
    });
    if !advisory.references.is_empty() {
        fields["references"] = json!(advisory.references.iter().map(ToString::to_string).collect::<Vec<_>>());
    }
    let extension = extension_definition(&identity_id);
    report["extensions"] = json!({ extension["id"].as_str().unwrap_or_default(): fields });
    objects.insert(2, extension);
    let report_id = report["id"].as_str().unwrap_or_default().to_owned();
    let summary_and_body = Localized(
        advisory
            .summary
            .0
            .keys()
            .chain(advisory.body.0.keys())
            .map(|l| {
                let parts = [advisory.summary.0.get(l), advisory.body.0.get(l)];
                let text = parts.into_iter().flatten().filter(|t| !t.is_empty()).cloned().collect::<Vec<_>>();
                (l.clone(), text.join("\n\n"))
            })
            .collect(),
    );
    translated.extend(translations(
        &report_id,
        &at,
        lang,
        &[("name", &advisory.title), ("description", &summary_and_body)],
    ));
    objects.push(report);
    objects.extend(translated);

    let bundle = json!({"type": "bundle", "id": stix_id("bundle", &name), "objects": objects});
    let text = serde_json::to_string_pretty(&bundle)
        .map_err(|e| FormatError::new("stix", "bundle", e.to_string()))?;
    Ok(Exported { text: text + "\n", warnings: Vec::new() })
}

#[cfg(test)]
mod tests {
    use kairan_protocol::fixtures;

    use super::*;

    fn bundle(advisory: &Advisory) -> Value {
        let out = export(advisory, &Digest::of(&advisory.to_payload())).expect("export");
        serde_json::from_str(&out.text).expect("json")
    }

    fn of_type<'a>(bundle: &'a Value, kind: &str) -> Vec<&'a Value> {
        bundle["objects"]
            .as_array()
            .map(|o| o.iter().filter(|x| x["type"] == kind).collect())
            .unwrap_or_default()
    }

    #[test]
    fn report_marked_with_tlp_and_vulnerabilities() {
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        let bundle = bundle(&advisory);
        let report = of_type(&bundle, "report")[0];
        assert_eq!(
            report["object_marking_refs"][0],
            "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
        );
        assert_eq!(of_type(&bundle, "marking-definition")[0]["name"], "TLP:AMBER");
        let vulnerability = of_type(&bundle, "vulnerability")[0];
        assert_eq!(vulnerability["name"], "CVE-2021-20837");
        assert!(report["object_refs"].as_array().is_some_and(|r| r.contains(&vulnerability["id"])));
        let english = &of_type(&bundle, "language-content")
            .into_iter()
            .find(|l| l["object_ref"] == report["id"])
            .expect("translation")["contents"]["en"];
        assert_eq!(english["name"], "Test advisory");
        let extension = of_type(&bundle, "extension-definition")[0]["id"].as_str().expect("extension id");
        assert_eq!(report["extensions"][extension]["scope"], "jp");
        assert_eq!(report["extensions"][extension]["status"], "test");
    }

    #[test]
    fn ids_are_deterministic_uuid_v5() {
        let advisory = fixtures::sample_advisory("mhlw", 1, None);
        assert_eq!(bundle(&advisory), bundle(&advisory));
        let id = stix_id("report", "sha256:00");
        let uuid = Uuid::parse_str(id.trim_start_matches("report--")).expect("uuid");
        assert_eq!(uuid.get_version_num(), 5);
        let other = fixtures::sample_advisory("mhlw", 2, Some(Digest::of(b"p")));
        assert_ne!(bundle(&advisory)["id"], bundle(&other)["id"]);
    }

    #[test]
    fn every_tlp_has_its_fixed_marking() {
        for tlp in [Tlp::Clear, Tlp::Green, Tlp::Amber, Tlp::AmberStrict, Tlp::Red] {
            let marking = tlp_marking(tlp);
            assert_eq!(marking["name"], tlp.to_string());
            assert!(marking["id"].as_str().is_some_and(|id| id.starts_with("marking-definition--")));
        }
    }
}
