//! `kairan inbox list|show [--json]`: the inbox with its current state, for people (text)
//! and scripts (JSON, the same as the clinic's web page serves at `/api/…`).

use crate::config::ClinicConfig;
use crate::error::CliError;
use crate::inbox::jst;
use crate::inbox::listing::{Inbox, Item, ShowJson, kind_label, standing_label, status_label};
use crate::inbox::state::Standing;

fn json(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::Failed(format!("JSON output: {e}")))
}

/// Reads the inbox (verifying every copy) and warns about refused copies on stderr.
fn read(config: &ClinicConfig) -> Result<Inbox, CliError> {
    let inbox = Inbox::read_as(&config.data_dir, &config.anchors, &crate::inbox::Recipient::of(config))?;
    for refused in &inbox.refused {
        eprintln!("kairan: NOT shown, failed verification: {}: {}", refused.file, refused.reason);
    }
    Ok(inbox)
}

/// A digest with its human id, when the inbox holds it: `3f2a9c1d2e4b (MHLW-CS-2021-001)`.
/// Notes never write `sha256:`, so scripts that take the first `sha256:` word of each line of
/// `kairan inbox list` still see one entry per line (scripts should use `--json`).
fn named(inbox: &Inbox, digest: &kairan_protocol::Digest) -> String {
    match inbox.label(digest) {
        Some((id, _)) => format!("{} ({id})", digest.short()),
        None => format!("{} (not received)", digest.short()),
    }
}

/// The state notes of one entry, one per line (none for a plain current alert).
pub fn state_notes(inbox: &Inbox, item: &Item) -> Vec<String> {
    let state = &item.state;
    let mut notes = Vec::new();
    if let Some(by) = &state.cancelled_by {
        notes.push(format!("取消済み / cancelled by {}", named(inbox, by)));
    }
    if let Some(by) = &state.superseded_by {
        notes.push(format!("更新済み / superseded by {}", named(inbox, by)));
    }
    let (verb_ja, verb_en) = kind_label(item.advisory.kind);
    for digest in &state.applied {
        notes.push(format!("{verb_ja}対象 / {verb_en}s {}", named(inbox, digest)));
    }
    for digest in &state.pending {
        notes.push(format!(
            "{verb_ja}対象は未着 / {verb_en} waits for {} (applied when it arrives)",
            digest.short()
        ));
    }
    for ignored in &state.ignored {
        let reason = serde_json::to_value(ignored.reason).ok().and_then(|v| v.as_str().map(str::to_owned));
        notes.push(format!(
            "適用せず / not applied to {}: {}",
            ignored.digest.short(),
            reason.unwrap_or_default()
        ));
    }
    notes
}

/// The head of `kairan inbox show`: title, summary and body, or for a sealed advisory the
/// plain notice that it is encrypted, with its id, origin and issue time.
pub fn content_text(advisory: &kairan_protocol::Advisory, unopened: Option<&str>, lang: &str) -> String {
    match crate::inbox::sealed_lines(advisory, unopened) {
        Some(lines) => {
            let mut out = lines.join("\n");
            out.push_str(&format!(
                "\n{} (発信元 / origin {}, seq {}, 発行 / issued {})\n",
                advisory.id,
                advisory.origin,
                advisory.seq,
                jst(advisory.issued_at)
            ));
            out
        }
        None => format!(
            "{}\n\n{}\n\n{}\n",
            advisory.title.get(lang),
            advisory.summary.get(lang),
            advisory.body.get(lang).trim_end()
        ),
    }
}

/// `kairan inbox list [--json]`.
pub fn list(config: &ClinicConfig, as_json: bool) -> Result<(), CliError> {
    let inbox = read(config)?;
    if as_json {
        println!("{}", json(&inbox.list_json())?);
        return Ok(());
    }
    if inbox.items.is_empty() {
        println!("(inbox empty)");
    }
    for item in &inbox.items {
        let (state_ja, _) = standing_label(item.state.standing);
        let (kind_ja, _) = kind_label(item.advisory.kind);
        let kind = match (item.advisory.kind, status_label(item.advisory.status)) {
            (kairan_protocol::Kind::Alert, None) => String::new(),
            (kairan_protocol::Kind::Alert, Some((status, _))) => format!("[{status}] "),
            (_, None) => format!("[{kind_ja}] "),
            (_, Some((status, _))) => format!("[{kind_ja}・{status}] "),
        };
        println!(
            "{:>4}  {}  {:<17} {:<8} {}  {:<5} {kind}{}",
            item.entry.inbox_seq,
            jst(item.entry.received_at),
            item.provenance.tlp,
            item.provenance.severity,
            &item.entry.digest.to_string()[..19],
            state_ja,
            item.provenance.title
        );
        if item.state.standing != Standing::Current || !item.state.pending.is_empty() {
            for note in state_notes(&inbox, item) {
                println!("        {note}");
            }
        }
    }
    Ok(())
}

/// `kairan inbox show DIGEST [--json]`.
pub fn show(config: &ClinicConfig, digest: &str, as_json: bool) -> Result<(), CliError> {
    let inbox = read(config)?;
    let item = inbox.find(digest).map_err(CliError::Usage)?;
    if as_json {
        println!("{}", json(&ShowJson::of(item))?);
        return Ok(());
    }
    let advisory = &item.advisory;
    let lang = config.lang.as_str();
    let (state_ja, state_en) = standing_label(item.state.standing);
    println!("{}  取扱: {}", advisory.tlp, advisory.handling);
    println!("状態 / state: {state_ja} / {state_en}");
    for note in state_notes(&inbox, item) {
        println!("  {note}");
    }
    println!();
    print!("{}", content_text(advisory, item.unopened.as_deref(), lang));
    for (index, entry) in advisory.items.iter().enumerate() {
        println!("  {}. {}", index + 1, entry.get(lang));
    }
    for link in &advisory.links {
        println!("  - {} {}", link.label.get(lang), link.url);
    }
    if let Some(contact) = &advisory.contact {
        println!("\n連絡先 / contact: {}", contact.get(lang));
    }
    if item.state.history.len() > 1 {
        println!("\n経緯 / history (oldest first):");
        for digest in &item.state.history {
            let Some(other) = inbox.get(digest) else { continue };
            let (kind, _) = kind_label(other.advisory.kind);
            let (standing, _) = standing_label(other.state.standing);
            let here = if digest == &item.entry.digest { "▶" } else { " " };
            println!(
                " {here} {}  {:<4} {:<5} {}  {}",
                digest.short(),
                kind,
                standing,
                jst(other.advisory.issued_at),
                other.provenance.title
            );
        }
    }
    println!();
    print!("{}", item.provenance.render_text());
    Ok(())
}

#[cfg(test)]
mod tests {
    use kairan_protocol::fixtures::Hierarchy;

    use super::*;
    use crate::inbox::testing;

    #[test]
    fn notes_name_what_changed_and_what_is_awaited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let digests = testing::alert_update_cancel(&hierarchy, dir.path());
        let missing = kairan_protocol::Digest::of(b"never received");
        let late = testing::advisory(4, Some(digests[2]), kairan_protocol::Kind::Cancel, &[missing]);
        testing::store(&hierarchy, dir.path(), 4, &late);
        let inbox = Inbox::read(dir.path(), &hierarchy.anchors).expect("read");
        let first = state_notes(&inbox, &inbox.items[0]);
        assert_eq!(
            first,
            vec![
                format!("取消済み / cancelled by {} (MHLW-TEST-003)", digests[2].short()),
                format!("更新済み / superseded by {} (MHLW-TEST-002)", digests[1].short()),
            ]
        );
        let update = state_notes(&inbox, &inbox.items[1]);
        assert_eq!(update, vec![format!("更新対象 / updates {} (MHLW-TEST-001)", digests[0].short())]);
        let pending = state_notes(&inbox, &inbox.items[3]);
        assert_eq!(pending.len(), 1);
        assert!(pending[0].contains("未着") && pending[0].contains(&missing.short()), "{pending:?}");
        assert!(first.iter().chain(&update).chain(&pending).all(|note| !note.contains("sha256:")));
    }
}
