//! One advisory in full (Japanese with English beside it, its state, details, verified path,
//! history) and its print view (A4, black on white, the TLP label and the handling line at
//! the top and the bottom as the FAX bulletins carried them).

use askama::Template;

use super::WebConfig;
use super::view::{Column, Row, area, href, jst_ja};
use crate::formats::prefectures::area_name;
use crate::inbox::jst;
use crate::inbox::listing::{Inbox, Item, kind_label, standing_label};

/// A line of the details table.
#[derive(Debug, Clone)]
pub struct Detail {
    /// Label.
    pub label: &'static str,
    /// Value.
    pub value: String,
}

/// A step of the verified path.
#[derive(Debug, Clone)]
pub struct Step {
    /// `発信元 / origin`, `中継 / relay`, `受信 / received`.
    pub role: &'static str,
    /// Who.
    pub who: String,
    /// When (JST).
    pub when: String,
    /// Short key id.
    pub key: String,
}

/// A version in the history.
#[derive(Debug, Clone)]
pub struct HistoryLine {
    /// Its page.
    pub href: String,
    /// Human id.
    pub id: String,
    /// Kind label.
    pub kind: String,
    /// Issued (JST).
    pub issued: String,
    /// Standing label.
    pub standing: String,
    /// Standing class.
    pub standing_class: &'static str,
    /// Title.
    pub title: String,
    /// Whether it is the advisory shown.
    pub here: bool,
}

/// `/advisory/{digest}`.
#[derive(Debug, Template)]
#[template(path = "advisory.html")]
pub struct AdvisoryPage {
    clinic: String,
    version: String,
    row: Row,
    handling: String,
    columns: Vec<Column>,
    facts: Vec<Detail>,
    steps: Vec<Step>,
    chain: Vec<String>,
    digest: String,
    history: Vec<HistoryLine>,
    print_href: String,
    json_href: String,
}

fn columns(item: &Item) -> Vec<Column> {
    let advisory = &item.advisory;
    let mut columns: Vec<Column> = Column::of(advisory, &advisory.lang).into_iter().collect();
    if advisory.lang != "en" {
        columns.extend(Column::of(advisory, "en"));
    }
    columns
}

fn short(keyid: &str) -> String {
    keyid.chars().take(16).collect()
}

fn steps(config: &WebConfig, item: &Item) -> Vec<Step> {
    let p = &item.provenance;
    let mut steps = vec![Step {
        role: "発信元 / origin",
        who: p.origin.clone(),
        when: format!("発行 / issued {}", jst(p.issued_at)),
        key: short(&p.origin_keyid),
    }];
    for hop in &p.hops {
        steps.push(Step {
            role: "中継 / relay",
            who: hop.relay.clone(),
            when: format!("受信 {} · 転送 / forwarded {}", jst(hop.received_at), jst(hop.forwarded_at)),
            key: short(&hop.keyid),
        });
    }
    steps.push(Step {
        role: "受信 / received",
        who: config.clinic_id.clone(),
        when: jst(item.entry.received_at),
        key: String::new(),
    });
    steps
}

fn chain(item: &Item) -> Vec<String> {
    let p = &item.provenance;
    let origin = p.origin_chain.iter().map(|l| (p.origin.as_str(), l));
    let hops = p.hops.iter().flat_map(|h| h.chain.iter().map(move |l| (h.relay.as_str(), l)));
    origin
        .chain(hops)
        .map(|(whose, link)| {
            format!(
                "{whose}: {} [{}] scope {} ← {} (serial {}, {} – {})",
                link.subject,
                link.roles.join(","),
                link.scope,
                link.issued_by,
                link.serial,
                jst(link.not_before),
                jst(link.not_after)
            )
        })
        .collect()
}

fn history(inbox: &Inbox, item: &Item) -> Vec<HistoryLine> {
    item.state
        .history
        .iter()
        .filter_map(|digest| inbox.get(digest))
        .map(|other| {
            let (kind_ja, kind_en) = kind_label(other.advisory.kind);
            let (standing_ja, standing_en) = standing_label(other.state.standing);
            let row = Row::of(inbox, other);
            HistoryLine {
                href: row.href,
                id: other.advisory.id.clone(),
                kind: format!("{kind_ja} / {kind_en}"),
                issued: jst(other.advisory.issued_at),
                standing: format!("{standing_ja} / {standing_en}"),
                standing_class: row.standing_class,
                title: other.provenance.title.clone(),
                here: other.entry.digest == item.entry.digest,
            }
        })
        .collect()
}

impl AdvisoryPage {
    /// The page of `item`.
    pub fn of(config: &WebConfig, version: &str, inbox: &Inbox, item: &Item) -> Self {
        let advisory = &item.advisory;
        let list = |values: &[String]| if values.is_empty() { "—".to_owned() } else { values.join(", ") };
        let facts = vec![
            Detail { label: "番号 / ID", value: advisory.id.clone() },
            Detail {
                // Sequence numbers count per scope (the origin's chain for this scope).
                label: "発信元 / origin",
                value: format!("{} (seq {} in {})", advisory.origin, advisory.seq, advisory.scope),
            },
            Detail { label: "対象地域 / scope", value: area(&advisory.scope) },
            Detail { label: "発行 / issued", value: jst(advisory.issued_at) },
            Detail { label: "有効期限 / expires", value: jst(advisory.expires_at) },
            Detail { label: "受信 / received", value: jst(item.entry.received_at) },
            Detail { label: "分類 / categories", value: list(&advisory.categories) },
            Detail { label: "CVE", value: list(&advisory.cves) },
            Detail {
                label: "出典 / source",
                value: advisory.source.as_ref().map_or_else(
                    || "—".to_owned(),
                    |s| format!("{}{}", s.name, s.url.as_ref().map(|u| format!(" {u}")).unwrap_or_default()),
                ),
            },
        ];
        let row = Row::of(inbox, item);
        AdvisoryPage {
            clinic: config.clinic_id.clone(),
            version: version.to_owned(),
            print_href: format!("{}/print", row.href),
            json_href: format!("/api{}", row.href),
            handling: advisory.handling.clone(),
            columns: columns(item),
            facts,
            steps: steps(config, item),
            chain: chain(item),
            digest: item.entry.digest.to_string(),
            history: history(inbox, item),
            row,
        }
    }
}

/// `/advisory/{digest}/print`.
#[derive(Debug, Template)]
#[template(path = "print.html")]
pub struct PrintPage {
    tlp: String,
    handling: String,
    title: String,
    back_href: String,
    addressee: String,
    origin: String,
    source: Option<String>,
    issued: String,
    id: String,
    severity: String,
    kind: Option<String>,
    notes: Vec<String>,
    sealed: Vec<String>,
    columns: Vec<Column>,
    digest: String,
    path: String,
}

impl PrintPage {
    /// The print view of `item`.
    pub fn of(config: &WebConfig, inbox: &Inbox, item: &Item) -> Self {
        let advisory = &item.advisory;
        let row = Row::of(inbox, item);
        let path =
            format!("{} → {} ({})", item.provenance.path(), config.clinic_id, jst(item.entry.received_at));
        PrintPage {
            tlp: advisory.tlp.to_string(),
            handling: advisory.handling.clone(),
            title: item.provenance.title.clone(),
            back_href: href(&item.entry.digest),
            addressee: format!("{}の医療機関", area_name(&advisory.scope, "ja")),
            origin: advisory.origin.clone(),
            source: advisory.source.as_ref().map(|s| s.name.clone()),
            issued: jst_ja(advisory.issued_at),
            id: advisory.id.clone(),
            severity: format!("{} ({})", advisory.severity.label_ja(), item.provenance.severity),
            kind: row.kind.clone(),
            notes: row
                .notes
                .iter()
                .map(|n| match &n.link {
                    Some(link) => format!("{} {}", n.text, link.id),
                    None => n.text.clone(),
                })
                .collect(),
            sealed: row.sealed.clone(),
            columns: columns(item),
            digest: item.entry.digest.to_string(),
            path,
        }
    }
}
