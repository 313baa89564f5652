//! Round trips: export then import gives back the same advisory, for the samples and for
//! advisories that exercise every corner (updates, cancels, every TLP, milliseconds, scopes
//! below a prefecture, languages beyond Japanese and English); and the checked-in exports
//! under `samples/exports/` are what the code produces today.

use kairan_protocol::advisory::{Advisory, Kind, Localized, Status, Tlp};
use kairan_protocol::{Digest, Scope, Timestamp, fixtures};

use super::*;
use crate::draft::{AdvisoryDraft, SAMPLES};

fn samples() -> Vec<(&'static str, Advisory)> {
    SAMPLES
        .iter()
        .map(|(name, text)| {
            let advisory = AdvisoryDraft::parse(text)
                .and_then(|d| d.into_advisory(Timestamp::from_unix_ms(0), None))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (*name, advisory)
        })
        .collect()
}

/// Advisories that use every field and every value of the enumerations.
fn corner_cases() -> Vec<Advisory> {
    let prev = Digest::of(b"previous");
    let mut update = fixtures::sample_advisory("nisc", 7, Some(prev));
    update.kind = Kind::Update;
    update.references = vec![prev, Digest::of(b"older")];
    update.status = Status::Exercise;
    update.tlp = Tlp::AmberStrict;
    update.scope = Scope::parse("jp/13/chuo").expect("scope");
    update.issued_at = update.issued_at.plus_ms(123);
    update.expires_at = update.expires_at.plus_ms(456);
    update.title = update.title.with("ko", "테스트");
    update.items.push(Localized::new("ja", "二つ目").with("en", "Second").with("ko", "둘째"));
    update.cves.push("CVE-2021-44228".into());
    let mut cancel = fixtures::sample_advisory("jma", 2, Some(prev));
    cancel.kind = Kind::Cancel;
    cancel.references = vec![prev];
    cancel.tlp = Tlp::Clear;
    cancel.cves.clear();
    cancel.items.clear();
    cancel.links.clear();
    cancel.contact = None;
    cancel.source = None;
    cancel.categories.clear();
    let mut red = fixtures::sample_advisory("mhlw", 1, None);
    red.tlp = Tlp::Red;
    red.status = Status::Test;
    red.handling = String::new();
    red.scope = Scope::parse("jp/47").expect("scope");
    red.source = Some(kairan_protocol::advisory::Source { name: "IPA".into(), url: None });
    let mut green = fixtures::sample_advisory("mhlw", 1, None);
    green.tlp = Tlp::Green;
    green.id = "MHLW CS 2021 004".into();
    vec![update, cancel, red, green]
}

fn all() -> Vec<(String, Advisory)> {
    let named = samples().into_iter().map(|(n, a)| (n.to_owned(), a));
    named.chain(corner_cases().into_iter().enumerate().map(|(i, a)| (format!("corner {i}"), a))).collect()
}

fn round_trip(advisory: &Advisory, format: Format) -> Imported {
    let digest = Digest::of(&advisory.to_payload());
    let exported = export(advisory, &digest, format).unwrap_or_else(|e| panic!("{format} export: {e}"));
    import(&exported.text, format).unwrap_or_else(|e| panic!("{format} import: {e}\n{}", exported.text))
}

#[test]
fn csaf_20_and_21_round_trip_every_field() {
    for format in [Format::Csaf20, Format::Csaf21] {
        for (name, advisory) in all() {
            let imported = round_trip(&advisory, format);
            assert_eq!(imported.advisory, advisory, "{format} {name}");
            assert!(imported.defaulted.is_empty(), "{format} {name}: {:?}", imported.defaulted);
        }
    }
}

#[test]
fn cap_round_trips_every_field() {
    for (name, advisory) in all() {
        let imported = round_trip(&advisory, Format::Cap);
        assert_eq!(imported.advisory, advisory, "cap {name}");
        assert!(imported.defaulted.is_empty(), "cap {name}: {:?}", imported.defaulted);
    }
}

#[test]
fn csaf_native_fields_survive_without_the_kairan_note() {
    let (_, advisory) = samples().remove(2);
    let digest = Digest::of(&advisory.to_payload());
    let text = export(&advisory, &digest, Format::Csaf21).expect("export").text;
    let mut csaf: serde_json::Value = serde_json::from_str(&text).expect("json");
    let notes = csaf["document"]["notes"].as_array_mut().expect("notes");
    notes.retain(|n| n["title"] != "kairan");
    let imported = import(&csaf.to_string(), Format::Csaf21).expect("import").advisory;
    assert_eq!(imported.cves, advisory.cves);
    assert_eq!(imported.items, advisory.items);
    assert_eq!(imported.links, advisory.links);
    assert_eq!(imported.tlp, advisory.tlp);
    assert_eq!(
        (&imported.id, imported.seq, imported.issued_at),
        (&advisory.id, advisory.seq, advisory.issued_at)
    );
    assert_eq!(
        (&imported.title, &imported.summary, &imported.body),
        (&advisory.title, &advisory.summary, &advisory.body)
    );
    assert_eq!(imported.severity, advisory.severity);
    assert_eq!(imported.source, advisory.source);
}

#[test]
fn cap_native_fields_survive_without_kairan_parameters() {
    let (_, advisory) = samples().remove(2);
    let digest = Digest::of(&advisory.to_payload());
    let text = export(&advisory, &digest, Format::Cap).expect("export").text;
    let stripped: String = strip_kairan_parameters(&text);
    let imported = import(&stripped, Format::Cap).expect("import");
    let a = imported.advisory;
    assert_eq!(
        (a.kind, a.status, a.severity, &a.cves, &a.categories),
        (advisory.kind, advisory.status, advisory.severity, &advisory.cves, &advisory.categories)
    );
    assert_eq!(
        (&a.title, &a.body, &a.items, &a.contact),
        (&advisory.title, &advisory.body, &advisory.items, &advisory.contact)
    );
    assert_eq!(
        (&a.id, a.issued_at, a.expires_at, &a.handling),
        (&advisory.id, advisory.issued_at, advisory.expires_at, &advisory.handling)
    );
    assert!(imported.defaulted.contains(&"tlp") && imported.defaulted.contains(&"scope"));
}

fn strip_kairan_parameters(xml: &str) -> String {
    let mut out = String::new();
    let mut lines = xml.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "<parameter>" && lines.peek().is_some_and(|l| l.contains("<valueName>kairan:")) {
            for skipped in lines.by_ref() {
                if skipped.trim() == "</parameter>" {
                    break;
                }
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn checked_in_exports_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/exports");
    for (name, advisory) in samples() {
        let digest = Digest::of(&advisory.to_payload());
        for (format, extension) in [
            (Format::Csaf20, "csaf-2.0.json"),
            (Format::Csaf21, "csaf-2.1.json"),
            (Format::Cap, "cap.xml"),
            (Format::Stix, "stix.json"),
        ] {
            let path = dir.join(format!("{name}.{extension}"));
            let expected = export(&advisory, &digest, format).expect("export").text;
            let found = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                found == expected,
                "{} is not what `kairan advisory export --format {format}` gives today; run scripts/validate-formats.sh --update",
                path.display()
            );
        }
    }
}
