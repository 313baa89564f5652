//! CAP 1.2 export (OASIS Common Alerting Protocol, `urn:oasis:names:tc:emergency:cap:1.2`).
//!
//! One `info` block per language, the advisory's primary language (Japanese) first. What CAP
//! has no element for travels in `parameter`s and `eventCode`s named `kairan:*` (and `CVE`),
//! so that [`super::cap_import`] gives back every advisory field.

use time::{OffsetDateTime, UtcOffset};

use kairan_protocol::advisory::{Advisory, Kind, Localized, Status, Tlp};
use kairan_protocol::{Digest, Scope, Timestamp};

use super::xml::XmlWriter;
use super::{languages, origin_urn, prefectures};

pub(super) const NS: &str = "urn:oasis:names:tc:emergency:cap:1.2";
pub(super) const P_SEQ: &str = "kairan:seq";
pub(super) const P_PREV: &str = "kairan:prev";
pub(super) const P_TLP: &str = "kairan:tlp";
pub(super) const P_HANDLING: &str = "kairan:handling";
pub(super) const P_SCOPE: &str = "kairan:scope";
pub(super) const P_SUMMARY: &str = "kairan:summary";
pub(super) const P_LINK: &str = "kairan:link";
pub(super) const P_ISSUED: &str = "kairan:issued_at";
pub(super) const P_EXPIRES: &str = "kairan:expires_at";
pub(super) const P_SOURCE_URL: &str = "kairan:source_url";
pub(super) const EC_CATEGORY: &str = "kairan:category";
pub(super) const EC_CVE: &str = "CVE";
pub(super) const GEO_JIS: &str = "JIS X 0401";
pub(super) const GEO_ISO: &str = "ISO 3166-1 alpha-2";

/// CAP times: seconds, with an explicit offset (CAP forbids `Z`); kairan writes JST.
pub(super) fn cap_time(at: Timestamp) -> String {
    let jst = UtcOffset::from_hms(9, 0, 0).unwrap_or(UtcOffset::UTC);
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.unix_ms()) * 1_000_000) {
        Ok(t) => {
            let t = t.to_offset(jst);
            let offset = if jst.is_utc() { "-00:00".to_owned() } else { "+09:00".to_owned() };
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{offset}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        Err(_) => at.to_rfc3339(),
    }
}

/// Whether CAP's whole seconds lose part of `at`.
pub(super) fn has_millis(at: Timestamp) -> bool {
    at.unix_ms().rem_euclid(1000) != 0
}

pub(super) fn status_word(status: Status) -> &'static str {
    match status {
        Status::Actual => "Actual",
        Status::Exercise => "Exercise",
        Status::Test => "Test",
    }
}

pub(super) fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Alert => "Alert",
        Kind::Update => "Update",
        Kind::Cancel => "Cancel",
    }
}

/// The CAP words for the five severities are kairan's, capitalised.
fn severity_word(advisory: &Advisory) -> &'static str {
    super::csaf::severity_word(advisory.severity)
}

/// Every language any localized field uses, the primary first.
fn all_languages(advisory: &Advisory) -> Vec<String> {
    let mut all = Localized::default();
    let fields = [&advisory.title, &advisory.summary, &advisory.body].into_iter();
    let lists = advisory.items.iter().chain(advisory.links.iter().map(|l| &l.label));
    for text in fields.chain(lists).chain(advisory.contact.as_ref()) {
        for lang in text.0.keys() {
            all.0.insert(lang.clone(), String::new());
        }
    }
    languages(&all, &advisory.lang).into_iter().map(|(l, _)| l.to_owned()).collect()
}

fn area(xml: &mut XmlWriter, scope: &Scope, lang: &str) {
    xml.open("area", None);
    xml.leaf("areaDesc", &prefectures::area_name(scope, lang));
    match prefectures::prefecture_code(scope) {
        Some(code) => xml.pair("geocode", GEO_JIS, code),
        None if scope.segments().first().is_some_and(|c| c == "jp") => xml.pair("geocode", GEO_ISO, "JP"),
        None => {}
    }
    xml.close();
}

pub(super) fn export(advisory: &Advisory, digest: &Digest) -> String {
    let mut xml = XmlWriter::new();
    xml.open("alert", Some(NS));
    xml.leaf("identifier", &digest.to_string());
    let sender = origin_urn(&advisory.origin);
    xml.leaf("sender", &sender);
    xml.leaf("sent", &cap_time(advisory.issued_at));
    xml.leaf("status", status_word(advisory.status));
    xml.leaf("msgType", kind_word(advisory.kind));
    if let Some(source) = &advisory.source {
        xml.leaf("source", &source.name);
    }
    let public = advisory.tlp == Tlp::Clear;
    xml.leaf("scope", if public { "Public" } else { "Restricted" });
    if !public {
        let tlp = advisory.tlp.to_string();
        xml.leaf("restriction", if advisory.handling.is_empty() { &tlp } else { &advisory.handling });
    }
    if !advisory.references.is_empty() {
        let refs: Vec<String> = advisory.references.iter().map(|d| format!("{sender},{d}")).collect();
        xml.leaf("references", &refs.join(" "));
    }
    let incident = if advisory.id.chars().any(char::is_whitespace) {
        format!("\"{}\"", advisory.id)
    } else {
        advisory.id.clone()
    };
    xml.leaf("incidents", &incident);

    for (n, lang) in all_languages(advisory).iter().enumerate() {
        let lang = lang.as_str();
        xml.open("info", None);
        xml.leaf("language", lang);
        xml.leaf("category", "Security");
        xml.leaf(
            "event",
            if prefectures::is_japanese(lang) {
                "サイバーセキュリティ注意喚起"
            } else {
                "Cybersecurity advisory"
            },
        );
        let response = match advisory.kind {
            Kind::Cancel => "AllClear",
            _ if advisory.items.is_empty() => "Monitor",
            _ => "Execute",
        };
        xml.leaf("responseType", response);
        xml.leaf("urgency", "Unknown");
        xml.leaf("severity", severity_word(advisory));
        xml.leaf("certainty", "Unknown");
        for category in &advisory.categories {
            xml.pair("eventCode", EC_CATEGORY, category);
        }
        for cve in &advisory.cves {
            xml.pair("eventCode", EC_CVE, cve);
        }
        xml.leaf("expires", &cap_time(advisory.expires_at));
        if let Some(title) = advisory.title.0.get(lang) {
            xml.leaf("headline", title);
        }
        if let Some(body) = advisory.body.0.get(lang) {
            xml.leaf("description", body);
        }
        let instructions: Vec<String> = (advisory.items.iter().enumerate())
            .filter_map(|(i, item)| item.0.get(lang).map(|text| format!("{}. {text}", i + 1)))
            .collect();
        if !instructions.is_empty() {
            xml.leaf("instruction", &instructions.join("\n"));
        }
        if let Some(link) = advisory.links.first() {
            xml.leaf("web", &link.url);
        }
        if let Some(contact) = advisory.contact.as_ref().and_then(|c| c.0.get(lang)) {
            xml.leaf("contact", contact);
        }
        if let Some(summary) = advisory.summary.0.get(lang) {
            xml.pair("parameter", P_SUMMARY, summary);
        }
        for link in &advisory.links {
            let value = match link.label.0.get(lang) {
                Some(label) => format!("{} {label}", link.url),
                None => link.url.clone(),
            };
            xml.pair("parameter", P_LINK, &value);
        }
        if n == 0 {
            alert_parameters(&mut xml, advisory, public);
        }
        area(&mut xml, &advisory.scope, lang);
        xml.close();
    }
    xml.finish()
}

/// The alert-wide fields CAP has no element for, in the first `info` block.
fn alert_parameters(xml: &mut XmlWriter, advisory: &Advisory, public: bool) {
    xml.pair("parameter", P_SEQ, &advisory.seq.to_string());
    if let Some(prev) = &advisory.prev {
        xml.pair("parameter", P_PREV, &prev.to_string());
    }
    xml.pair("parameter", P_TLP, &advisory.tlp.to_string());
    if public && !advisory.handling.is_empty() {
        xml.pair("parameter", P_HANDLING, &advisory.handling);
    }
    xml.pair("parameter", P_SCOPE, &advisory.scope.to_string());
    if has_millis(advisory.issued_at) {
        xml.pair("parameter", P_ISSUED, &advisory.issued_at.to_rfc3339());
    }
    if has_millis(advisory.expires_at) {
        xml.pair("parameter", P_EXPIRES, &advisory.expires_at.to_rfc3339());
    }
    if let Some(url) = advisory.source.as_ref().and_then(|s| s.url.as_ref()) {
        xml.pair("parameter", P_SOURCE_URL, url);
    }
}

#[cfg(test)]
mod tests {
    use kairan_protocol::fixtures;

    use super::*;

    #[test]
    fn times_are_jst_seconds() {
        assert_eq!(cap_time(fixtures::FIXTURE_NOW), "2021-12-01T18:00:00+09:00");
        assert!(!has_millis(fixtures::FIXTURE_NOW));
        assert!(has_millis(fixtures::FIXTURE_NOW.plus_ms(5)));
    }

    #[test]
    fn japanese_info_first_and_area_from_scope() {
        let mut advisory = fixtures::sample_advisory("mhlw", 1, None);
        advisory.scope = Scope::parse("jp/13").expect("scope");
        let text = export(&advisory, &Digest::of(b"x"));
        let doc = roxmltree::Document::parse(&text).expect("xml");
        let infos: Vec<_> = doc.root_element().children().filter(|n| n.has_tag_name("info")).collect();
        let lang = |i: usize| infos[i].children().find(|n| n.has_tag_name("language")).and_then(|n| n.text());
        assert_eq!((lang(0), lang(1)), (Some("ja"), Some("en")));
        assert!(
            text.contains("<areaDesc>東京都</areaDesc>") && text.contains("<areaDesc>Tokyo</areaDesc>"),
            "{text}"
        );
        assert!(text.contains("<valueName>JIS X 0401</valueName>\n        <value>13</value>"), "{text}");
        assert!(text.contains("<scope>Restricted</scope>"));
        assert!(text.contains("<instruction>1. VPN機器を更新する</instruction>"));
    }

    #[test]
    fn clear_is_public_and_references_name_the_sender() {
        let mut advisory = fixtures::sample_advisory("mhlw", 2, Some(Digest::of(b"p")));
        advisory.tlp = Tlp::Clear;
        advisory.kind = Kind::Cancel;
        advisory.references = vec![Digest::of(b"p")];
        let text = export(&advisory, &Digest::of(b"x"));
        assert!(text.contains("<scope>Public</scope>") && !text.contains("<restriction>"));
        assert!(
            text.contains(&format!("<references>urn:kairan:origin:mhlw,{}</references>", Digest::of(b"p")))
        );
        assert!(
            text.contains("<msgType>Cancel</msgType>")
                && text.contains("<responseType>AllClear</responseType>")
        );
    }
}
