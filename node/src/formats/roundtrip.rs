//! Round trips: export then import gives back the same advisory, for the samples and for
//! advisories that exercise every corner (updates, cancels, every TLP that travels in clear,
//! milliseconds, scopes below a prefecture, languages beyond Japanese and English); documents
//! marked TLP:RED or AMBER+STRICT keep their marking through export and are refused on import
//! naming the sealing rule (issue 8); a sealed advisory is not exported; and the checked-in
//! exports under `samples/exports/` are what the code produces today.

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
    update.tlp = Tlp::Green;
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
    // TLP:RED and AMBER+STRICT travel only sealed, and a sealed advisory has no text to
    // convert: see `red_and_amber_strict_keep_their_marking_and_are_refused_on_import`.
    let mut okinawa = fixtures::sample_advisory("mhlw", 1, None);
    okinawa.tlp = Tlp::Amber;
    okinawa.status = Status::Test;
    okinawa.handling = String::new();
    okinawa.scope = Scope::parse("jp/47").expect("scope");
    okinawa.source = Some(kairan_protocol::advisory::Source { name: "IPA".into(), url: None });
    let mut green = fixtures::sample_advisory("mhlw", 1, None);
    green.tlp = Tlp::Green;
    green.id = "MHLW CS 2021 004".into();
    vec![update, cancel, okinawa, green]
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
fn red_and_amber_strict_keep_their_marking_and_are_refused_on_import() {
    for (tlp, label) in [(Tlp::Red, "TLP:RED"), (Tlp::AmberStrict, "TLP:AMBER+STRICT")] {
        // An advisory in clear with a sealed label is not valid, but export renders whatever
        // it is given: the marking must survive, and the import must name the rule.
        let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
        advisory.tlp = tlp;
        let digest = Digest::of(&advisory.to_payload());
        for format in [Format::Csaf20, Format::Csaf21, Format::Cap] {
            let exported = export(&advisory, &digest, format).unwrap_or_else(|e| panic!("{format}: {e}"));
            let csaf_label = format!("\"label\": \"{}\"", label.trim_start_matches("TLP:"));
            let marked = exported.text.contains(label) || exported.text.contains(&csaf_label);
            assert!(marked, "{format} {label}: marking lost\n{}", exported.text);
            let err = import(&exported.text, format).expect_err("refused");
            assert_eq!(err.field, "tlp", "{format} {label}: {err}");
            assert!(err.reason.starts_with(&format!("{label} advisories must be sealed")), "{err}");
            assert!(
                err.reason.contains("issue 8") && err.reason.contains("kairan publish --seal-to"),
                "{err}"
            );
        }
    }
}

#[test]
fn a_sealed_advisory_is_not_exported() {
    for sealed in [fixtures::sealed::sealed_red(), fixtures::sealed::sealed_amber_strict()] {
        sealed.validate().expect("the fixture is valid");
        let digest = Digest::of(&sealed.to_payload());
        for format in [Format::Csaf20, Format::Csaf21, Format::Cap, Format::Stix] {
            let err = export(&sealed, &digest, format).expect_err("refused");
            assert_eq!(err.field, "sealed");
            assert!(err.reason.contains("is sealed") && err.reason.contains(&sealed.id), "{err}");
        }
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
