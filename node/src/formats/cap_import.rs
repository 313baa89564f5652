//! CAP 1.2 import: an `alert` to an advisory. CAP elements first, then the `kairan:*`
//! parameters for what CAP has no element for; a CAP message kairan did not write gets
//! defaults for those, named in [`super::Imported::defaulted`].

use std::collections::BTreeMap;

use roxmltree::{Document, Node};

use kairan_protocol::advisory::{Advisory, Kind, Link, Localized, Severity, Source, Status, Tlp};
use kairan_protocol::{Digest, Scope, Timestamp};

use super::cap::{
    EC_CATEGORY, EC_CVE, GEO_ISO, GEO_JIS, NS, P_EXPIRES, P_HANDLING, P_ISSUED, P_LINK, P_PREV, P_SCOPE,
    P_SEQ, P_SOURCE_URL, P_SUMMARY, P_TLP,
};
use super::csaf_import::{country, severity_of};
use super::{FormatError, Imported, origin_from_name};

fn err(field: impl Into<String>, reason: impl Into<String>) -> FormatError {
    FormatError::new("cap", field, reason)
}

fn children<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children().filter(move |n| {
        n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(NS)
    })
}

fn text<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|n| n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(NS))
        .map(|n| n.text().unwrap_or(""))
}

fn required<'a>(node: Node<'a, '_>, path: &str, name: &str) -> Result<&'a str, FormatError> {
    text(node, name).ok_or_else(|| FormatError::missing("cap", format!("{path}/{name}")))
}

/// `(valueName, value)` pairs of the `parameter`, `eventCode` or `geocode` children.
fn pairs<'a>(node: Node<'a, '_>, name: &'a str) -> Vec<(&'a str, &'a str)> {
    children(node, name)
        .map(|n| (text(n, "valueName").unwrap_or(""), text(n, "value").unwrap_or("")))
        .collect()
}

fn time(value: &str, field: &str) -> Result<Timestamp, FormatError> {
    Timestamp::parse_rfc3339(value)
        .ok_or_else(|| err(field, format!("{value:?} is not a date-time with offset")))
}

/// Items from `1. first\n2. second` (a line not starting `N. ` continues the item before).
fn instructions(text: &str) -> Vec<(usize, String)> {
    let mut items: Vec<(usize, String)> = Vec::new();
    for line in text.lines() {
        let numbered = line.split_once(". ").and_then(|(n, rest)| n.parse::<usize>().ok().map(|n| (n, rest)));
        match (numbered, items.last_mut()) {
            (Some((n, rest)), _) if n > 0 => items.push((n, rest.to_owned())),
            (_, Some((_, item))) => {
                item.push('\n');
                item.push_str(line);
            }
            (_, None) => items.push((1, line.to_owned())),
        }
    }
    items
}

pub(super) fn import(xml: &str) -> Result<Imported, FormatError> {
    let doc = Document::parse(xml).map_err(|e| err("(document)", e.to_string()))?;
    let alert = doc.root_element();
    if alert.tag_name().name() != "alert" || alert.tag_name().namespace() != Some(NS) {
        return Err(err("/alert", format!("the root element must be alert in {NS}")));
    }
    let mut defaulted = Vec::new();
    let infos: Vec<Node> = children(alert, "info").collect();
    let first = *infos.first().ok_or_else(|| FormatError::missing("cap", "/alert/info"))?;
    let params: BTreeMap<&str, &str> = pairs(first, "parameter").into_iter().rev().collect();
    let param = |name: &str| params.get(name).copied();

    let sender = required(alert, "/alert", "sender")?;
    let origin = sender.strip_prefix("urn:kairan:origin:").map(str::to_owned).unwrap_or_else(|| {
        defaulted.push("origin");
        origin_from_name(sender)
    });
    let seq = match param(P_SEQ) {
        Some(seq) => {
            seq.parse().map_err(|_| err(format!("parameter {P_SEQ}"), format!("{seq:?} is not a number")))?
        }
        None => {
            defaulted.push("seq");
            1
        }
    };
    let prev = param(P_PREV)
        .map(|p| Digest::parse(p).map_err(|e| err(format!("parameter {P_PREV}"), e)))
        .transpose()?;
    let kind = match required(alert, "/alert", "msgType")? {
        "Alert" => Kind::Alert,
        "Update" => Kind::Update,
        "Cancel" => Kind::Cancel,
        other => {
            return Err(err("/alert/msgType", format!("{other:?}: kairan carries Alert, Update and Cancel")));
        }
    };
    let status = match required(alert, "/alert", "status")? {
        "Actual" => Status::Actual,
        "Exercise" => Status::Exercise,
        "Test" => Status::Test,
        other => {
            return Err(err("/alert/status", format!("{other:?}: kairan carries Actual, Exercise and Test")));
        }
    };
    let mut references = Vec::new();
    for entry in text(alert, "references").unwrap_or("").split_whitespace() {
        let identifier = entry.split(',').nth(1).unwrap_or(entry);
        references.push(Digest::parse(identifier).map_err(|e| err("/alert/references", e))?);
    }
    let id = match text(alert, "incidents").map(str::trim).filter(|i| !i.is_empty()) {
        Some(incident) => incident.trim_matches('"').to_owned(),
        None => required(alert, "/alert", "identifier")?.to_owned(),
    };
    let issued_at = match param(P_ISSUED) {
        Some(at) => time(at, &format!("parameter {P_ISSUED}"))?,
        None => time(required(alert, "/alert", "sent")?, "/alert/sent")?,
    };
    let expires_at = match (param(P_EXPIRES), text(first, "expires")) {
        (Some(at), _) => time(at, &format!("parameter {P_EXPIRES}"))?,
        (None, Some(at)) => time(at, "/alert/info/expires")?,
        (None, None) => {
            defaulted.push("expires_at");
            issued_at.plus_secs(30 * 24 * 3600)
        }
    };
    let public = required(alert, "/alert", "scope")? == "Public";
    let tlp = match param(P_TLP) {
        Some(label) => {
            serde_json::from_value::<Tlp>(serde_json::Value::String(label.trim_start_matches("TLP:").into()))
                .map_err(|_| err(format!("parameter {P_TLP}"), format!("{label:?} is not a TLP 2.0 label")))?
        }
        None => {
            defaulted.push("tlp");
            if public { Tlp::Clear } else { Tlp::Amber }
        }
    };
    let handling = match (param(P_HANDLING), text(alert, "restriction")) {
        (Some(h), _) => h.to_owned(),
        (None, Some(r)) if r == tlp.to_string() => String::new(),
        (None, Some(r)) => r.to_owned(),
        (None, None) => String::new(),
    };
    let scope = match param(P_SCOPE) {
        Some(s) => Scope::parse(s).map_err(|e| err(format!("parameter {P_SCOPE}"), e))?,
        None => {
            defaulted.push("scope");
            scope_from_area(first)?
        }
    };
    let severity = severity_of(required(first, "/alert/info", "severity")?).unwrap_or(Severity::Unknown);
    let codes = pairs(first, "eventCode");
    let of = |name: &str| {
        codes.iter().filter(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()).collect::<Vec<_>>()
    };

    let lang = text(first, "language").unwrap_or("en-US").to_owned();
    let (mut title, mut summary, mut body, mut contact) =
        (Localized::default(), Localized::default(), Localized::default(), Localized::default());
    let mut items: Vec<Localized> = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    for info in &infos {
        let l = text(*info, "language").unwrap_or("en-US");
        let put = |field: &mut Localized, value: Option<&str>| {
            if let Some(v) = value {
                field.0.insert(l.to_owned(), v.to_owned());
            }
        };
        put(&mut title, text(*info, "headline"));
        put(&mut body, text(*info, "description"));
        put(&mut contact, text(*info, "contact"));
        let info_params = pairs(*info, "parameter");
        put(&mut summary, info_params.iter().find(|(n, _)| *n == P_SUMMARY).map(|(_, v)| *v));
        for (n, item) in instructions(text(*info, "instruction").unwrap_or("")) {
            if items.len() < n {
                items.resize(n, Localized::default());
            }
            items[n - 1].0.insert(l.to_owned(), item);
        }
        for (n, (_, value)) in info_params.iter().filter(|(name, _)| *name == P_LINK).enumerate() {
            let (url, label) = value.split_once(' ').unwrap_or((value, ""));
            if links.len() <= n {
                links.push(Link { url: url.to_owned(), label: Localized::default() });
            }
            if !label.is_empty() {
                links[n].label.0.insert(l.to_owned(), label.to_owned());
            }
        }
    }
    let source = text(alert, "source")
        .map(|name| Source { name: name.to_owned(), url: param(P_SOURCE_URL).map(str::to_owned) });
    let advisory = Advisory {
        origin,
        seq,
        prev,
        id,
        kind,
        references,
        status,
        issued_at,
        expires_at,
        tlp,
        handling,
        scope,
        severity,
        categories: of(EC_CATEGORY),
        cves: of(EC_CVE),
        lang,
        title,
        summary,
        body,
        items,
        links,
        contact: (!contact.0.is_empty()).then_some(contact),
        source,
        sealed: None,
    };
    Ok(Imported { advisory, defaulted })
}

/// `jp/NN` from a JIS X 0401 geocode, `jp` from ISO 3166-1 `JP` or no geocode.
fn scope_from_area(info: Node) -> Result<Scope, FormatError> {
    for area in children(info, "area") {
        for (name, value) in pairs(area, "geocode") {
            if name == GEO_JIS {
                return Scope::parse(&format!("jp/{value}")).map_err(|e| err("/alert/info/area/geocode", e));
            }
            if name == GEO_ISO && value != "JP" {
                return Err(err("/alert/info/area/geocode", format!("{value:?} is outside Japan")));
            }
        }
    }
    Ok(country())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_instructions() {
        let items = instructions("1. first\n2. second\ncontinued\n3. third");
        assert_eq!(items, [(1, "first".into()), (2, "second\ncontinued".into()), (3, "third".into())]);
        assert_eq!(instructions("just do it"), [(1, "just do it".into())]);
    }

    #[test]
    fn foreign_alert_gets_defaults() {
        let xml = format!(
            "<alert xmlns=\"{NS}\"><identifier>X-1</identifier><sender>ops@example.jp</sender>\
             <sent>2021-12-01T10:00:00+09:00</sent><status>Actual</status><msgType>Alert</msgType>\
             <scope>Public</scope><info><language>ja-JP</language><category>Security</category>\
             <event>e</event><urgency>Unknown</urgency><severity>Severe</severity><certainty>Unknown</certainty>\
             <headline>見出し</headline><area><areaDesc>東京都</areaDesc>\
             <geocode><valueName>JIS X 0401</valueName><value>13</value></geocode></area></info></alert>"
        );
        let imported = import(&xml).expect("import");
        let a = &imported.advisory;
        assert_eq!((a.id.as_str(), a.origin.as_str(), a.tlp), ("X-1", "ops-example-jp", Tlp::Clear));
        assert_eq!(a.scope.to_string(), "jp/13");
        assert_eq!(a.title.get("ja-JP"), "見出し");
        assert_eq!(imported.defaulted, ["origin", "seq", "expires_at", "tlp", "scope"]);
    }

    #[test]
    fn errors_name_the_element() {
        let err = import(&format!("<alert xmlns=\"{NS}\"><info/></alert>")).expect_err("refused");
        assert_eq!(err.field, "/alert/sender");
        let err = import("<alert/>").expect_err("refused");
        assert_eq!(err.field, "/alert");
    }
}
