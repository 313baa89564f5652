//! CSAF 2.0 / 2.1 import: any CSAF document to an advisory.
//!
//! Every field is read from its native CSAF place first (tracking, distribution, notes,
//! references, vulnerabilities, remediations, acknowledgments); the `kairan` note supplies
//! only what CSAF has no place for. A document kairan did not write gets defaults for those
//! fields, and [`super::Imported::defaulted`] names them.

use std::collections::BTreeMap;

use serde_json::Value;

use kairan_protocol::advisory::{Advisory, Kind, Link, Localized, Severity, Source, Status, Tlp};
use kairan_protocol::{Scope, Timestamp};

use super::csaf::{KAIRAN_NOTE, KairanFields, SOURCE_ACK, seq_of};
use super::{FormatError, Imported, origin_from_name, parse_advisory_urn};

const DAY_SECS: i64 = 24 * 3600;

/// `jp`, the scope of an imported document that names none.
pub(super) fn country() -> Scope {
    Scope::parse("jp").expect("\"jp\" is a valid scope literal")
}

fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

fn opt_str<'a>(value: &'a Value, path: &str) -> Result<Option<&'a str>, FormatError> {
    match at(value, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(FormatError::new("csaf", path, "must be a string")),
    }
}

fn req_str<'a>(value: &'a Value, path: &str) -> Result<&'a str, FormatError> {
    opt_str(value, path)?.ok_or_else(|| FormatError::missing("csaf", path))
}

fn array<'a>(value: &'a Value, path: &str) -> Result<&'a [Value], FormatError> {
    match at(value, path) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(FormatError::new("csaf", path, "must be an array")),
    }
}

fn time(value: &Value, path: &str) -> Result<Timestamp, FormatError> {
    let text = req_str(value, path)?;
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| FormatError::new("csaf", path, format!("{text:?} is not RFC 3339")))
}

/// `Summary (ja)` → (`Summary`, `ja`).
fn split_note_title(title: &str) -> Option<(&str, &str)> {
    let (key, rest) = title.rsplit_once(" (")?;
    let lang = rest.strip_suffix(')')?;
    let tag =
        !lang.is_empty() && lang.len() <= 16 && lang.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    tag.then_some((key, lang))
}

fn numbered(key: &str, word: &str) -> Option<usize> {
    key.strip_prefix(word)?.strip_prefix(' ')?.parse::<usize>().ok().filter(|n| *n > 0)
}

fn append(map: &mut BTreeMap<String, String>, lang: &str, text: &str) {
    let entry = map.entry(lang.to_owned()).or_default();
    if !entry.is_empty() {
        entry.push_str("\n\n");
    }
    entry.push_str(text);
}

fn put(list: &mut Vec<Localized>, n: usize, lang: &str, text: &str) {
    if list.len() < n {
        list.resize(n, Localized::default());
    }
    list[n - 1].0.insert(lang.to_owned(), text.to_owned());
}

fn tlp_of(label: &str, field: &str) -> Result<Tlp, FormatError> {
    match label {
        "WHITE" | "CLEAR" => Ok(Tlp::Clear),
        "GREEN" => Ok(Tlp::Green),
        "AMBER" => Ok(Tlp::Amber),
        "AMBER+STRICT" => Ok(Tlp::AmberStrict),
        "RED" => Ok(Tlp::Red),
        other => Err(FormatError::new("csaf", field, format!("{other:?} is not a TLP label"))),
    }
}

/// CAP words, and the words CSAF publishers commonly use.
pub(super) fn severity_of(text: &str) -> Option<Severity> {
    match text.trim().to_ascii_lowercase().as_str() {
        "unknown" => Some(Severity::Unknown),
        "minor" | "low" => Some(Severity::Minor),
        "moderate" | "medium" => Some(Severity::Moderate),
        "severe" | "high" | "important" => Some(Severity::Severe),
        "extreme" | "critical" => Some(Severity::Extreme),
        _ => None,
    }
}

pub(super) fn import(text: &str) -> Result<Imported, FormatError> {
    let csaf: Value =
        serde_json::from_str(text).map_err(|e| FormatError::new("csaf", "(document)", e.to_string()))?;
    let version = req_str(&csaf, "document.csaf_version")?;
    if version != "2.0" && version != "2.1" {
        return Err(FormatError::new(
            "csaf",
            "document.csaf_version",
            format!("{version:?}: only 2.0 and 2.1"),
        ));
    }
    let mut defaulted = Vec::new();
    let lang = opt_str(&csaf, "document.lang")?.unwrap_or_else(|| {
        defaulted.push("lang");
        "en"
    });
    let lang = lang.to_owned();

    let mut fields: Option<KairanFields> = None;
    let (mut title, mut summary, mut body, mut contact) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let (mut item_notes, mut link_notes) = (Vec::new(), Vec::new());
    title.insert(lang.clone(), req_str(&csaf, "document.title")?.to_owned());
    for (i, note) in array(&csaf, "document.notes")?.iter().enumerate() {
        let path = format!("document.notes.{i}");
        let text =
            req_str(note, "text").map_err(|e| FormatError::new("csaf", format!("{path}.text"), e.reason))?;
        let category = opt_str(note, "category")?.unwrap_or("general");
        let note_title = opt_str(note, "title")?.unwrap_or("");
        if category == "other" && note_title == KAIRAN_NOTE {
            let parsed = serde_json::from_str(text).map_err(|e| {
                FormatError::new("csaf", format!("{path}.text (kairan fields)"), e.to_string())
            })?;
            fields = Some(parsed);
            continue;
        }
        match split_note_title(note_title) {
            Some(("Summary", l)) => append(&mut summary, l, text),
            Some(("Body", l)) => append(&mut body, l, text),
            Some(("Title", l)) => append(&mut title, l, text),
            Some(("Contact", l)) => append(&mut contact, l, text),
            Some((key, l)) if numbered(key, "Item").is_some() => {
                item_notes.push((numbered(key, "Item").unwrap_or(1), l.to_owned(), text.to_owned()));
            }
            Some((key, l)) if numbered(key, "Link").is_some() => {
                link_notes.push((numbered(key, "Link").unwrap_or(1), l.to_owned(), text.to_owned()));
            }
            _ if category == "summary" => append(&mut summary, &lang, text),
            _ if note_title.is_empty() => append(&mut body, &lang, text),
            _ => append(&mut body, &lang, &format!("{note_title}\n{text}")),
        }
    }

    let namespace = req_str(&csaf, "document.publisher.namespace")?;
    let publisher = req_str(&csaf, "document.publisher.name")?;
    let kairan_origin = namespace.strip_prefix("urn:kairan:origin:");
    let origin = kairan_origin.map(str::to_owned).unwrap_or_else(|| {
        defaulted.push("origin");
        origin_from_name(publisher)
    });
    if let Some(details) = opt_str(&csaf, "document.publisher.contact_details")? {
        contact.entry(lang.clone()).or_insert_with(|| details.to_owned());
    }

    let tracking_version = req_str(&csaf, "document.tracking.version")?;
    let seq = kairan_origin.and_then(|_| seq_of(tracking_version)).unwrap_or_else(|| {
        defaulted.push("seq");
        1
    });
    let issued_at = time(&csaf, "document.tracking.current_release_date")?;

    let mut tlp = match opt_str(&csaf, "document.distribution.tlp.label")? {
        Some(label) => tlp_of(label, "document.distribution.tlp.label")?,
        None => {
            defaulted.push("tlp");
            Tlp::Amber
        }
    };
    let mut handling = opt_str(&csaf, "document.distribution.text")?.unwrap_or_default().to_owned();
    if let Some(exact) = fields.as_ref().and_then(|f| f.tlp) {
        tlp = exact;
        if let Some(rest) = handling.strip_prefix(&format!("{exact}. ")) {
            handling = rest.to_owned();
        }
    }

    let severity = match opt_str(&csaf, "document.aggregate_severity.text")?.map(severity_of) {
        Some(Some(severity)) => severity,
        _ => {
            defaulted.push("severity");
            Severity::Unknown
        }
    };

    let mut links = Vec::new();
    let mut references = Vec::new();
    for (i, reference) in array(&csaf, "document.references")?.iter().enumerate() {
        let path = format!("document.references.{i}");
        let url = req_str(reference, "url")
            .map_err(|e| FormatError::new("csaf", format!("{path}.url"), e.reason))?;
        if opt_str(reference, "category")? == Some("self") {
            continue;
        }
        match parse_advisory_urn(url) {
            Some(Ok(digest)) => references.push(digest),
            Some(Err(e)) => return Err(FormatError::new("csaf", format!("{path}.url"), e)),
            None => {
                let label =
                    opt_str(reference, "summary")?.filter(|s| *s != url).map(|s| Localized::new(&lang, s));
                links.push(Link { url: url.to_owned(), label: label.unwrap_or_default() });
            }
        }
    }
    for (n, l, text) in link_notes {
        if let Some(link) = links.get_mut(n - 1) {
            link.label.0.insert(l, text);
        }
    }

    let mut cves = Vec::new();
    let mut items: Vec<Localized> = Vec::new();
    for (i, vulnerability) in array(&csaf, "vulnerabilities")?.iter().enumerate() {
        if let Some(cve) = opt_str(vulnerability, "cve")? {
            cves.push(cve.to_owned());
        }
        for (j, remediation) in array(vulnerability, "remediations")?.iter().enumerate() {
            let details = req_str(remediation, "details").map_err(|e| {
                FormatError::new("csaf", format!("vulnerabilities.{i}.remediations.{j}.details"), e.reason)
            })?;
            if !items.iter().any(|item| item.0.get(&lang).is_some_and(|d| d == details)) {
                items.push(Localized::new(&lang, details));
            }
        }
    }
    for (n, l, text) in item_notes {
        put(&mut items, n, &l, &text);
    }

    let acknowledgments = array(&csaf, "document.acknowledgments")?;
    let source =
        match acknowledgments.iter().find(|a| a.get("summary").and_then(Value::as_str) == Some(SOURCE_ACK)) {
            Some(ack) => Some(Source {
                name: req_str(ack, "organization")?.to_owned(),
                url: array(ack, "urls")?.first().and_then(Value::as_str).map(str::to_owned),
            }),
            None if kairan_origin.is_some() => None,
            None => {
                let self_url = array(&csaf, "document.references")?
                    .iter()
                    .find(|r| r.get("category").and_then(Value::as_str) == Some("self"))
                    .and_then(|r| r.get("url").and_then(Value::as_str))
                    .filter(|url| url.starts_with("https://") || url.starts_with("http://"));
                Some(Source { name: publisher.to_owned(), url: self_url.map(str::to_owned) })
            }
        };

    let fields = fields.unwrap_or_else(|| {
        defaulted.extend(["kind", "status", "expires_at", "scope"]);
        KairanFields {
            kind: if references.is_empty() { Kind::Alert } else { Kind::Update },
            status: Status::Actual,
            expires_at: issued_at.plus_secs(30 * DAY_SECS),
            scope: country(),
            categories: Vec::new(),
            prev: None,
            tlp: None,
        }
    });
    let advisory = Advisory {
        origin,
        seq,
        prev: fields.prev,
        id: req_str(&csaf, "document.tracking.id")?.to_owned(),
        kind: fields.kind,
        references,
        status: fields.status,
        issued_at,
        expires_at: fields.expires_at,
        tlp,
        handling,
        scope: fields.scope,
        severity,
        categories: fields.categories,
        cves,
        lang,
        title: Localized(title),
        summary: Localized(summary),
        body: Localized(body),
        items,
        links,
        contact: (!contact.is_empty()).then_some(Localized(contact)),
        source,
        sealed: None,
    };
    Ok(Imported { advisory, defaulted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_titles() {
        assert_eq!(split_note_title("Summary (ja)"), Some(("Summary", "ja")));
        assert_eq!(split_note_title("Item 12 (en-US)"), Some(("Item 12", "en-US")));
        assert_eq!(split_note_title("Summary"), None);
        assert_eq!(split_note_title("Risk (see below) now"), None);
        assert_eq!(numbered("Item 3", "Item"), Some(3));
        assert_eq!(numbered("Item 0", "Item"), None);
        assert_eq!(numbered("Items 3", "Item"), None);
    }

    #[test]
    fn severities() {
        assert_eq!(severity_of("Severe"), Some(Severity::Severe));
        assert_eq!(severity_of("critical"), Some(Severity::Extreme));
        assert_eq!(severity_of("bad"), None);
    }

    #[test]
    fn errors_name_the_field() {
        let err = import(r#"{"document": {"csaf_version": "2.0"}}"#).expect_err("refused");
        assert_eq!(err.field, "document.title");
        let err = import(r#"{"document": {"csaf_version": "1.2"}}"#).expect_err("refused");
        assert_eq!(err.field, "document.csaf_version");
        let err = import(r#"{"document": {"csaf_version": 2}}"#).expect_err("refused");
        assert_eq!((err.field.as_str(), err.reason.as_str()), ("document.csaf_version", "must be a string"));
    }
}
