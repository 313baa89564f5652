//! `kairan audit log`: verify a node's transparency log and checkpoint history offline.

use std::path::PathBuf;

use clap::Args;

use crate::error::CliError;
use crate::store::audit::{LogAudit, audit_log};

/// Arguments of `kairan audit log`.
#[derive(Debug, Args)]
pub struct AuditLogArgs {
    /// The node's store directory, the one holding `segments/`: a relay's `data_dir`, a
    /// clinic's `data_dir/store`. Only read, never written, so it may be audited while the
    /// node runs.
    #[arg(long)]
    pub store: PathBuf,
    /// The node's public key file (hex, as `kairan keygen` writes it): check that the node
    /// signed every checkpoint it kept. Without it, signatures are not checked.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn log(args: &AuditLogArgs) -> Result<(), CliError> {
    if !crate::store::disk_store::segments_dir(&args.store).is_dir() {
        return Err(CliError::Usage(format!(
            "{}: no segments/ directory: not a node's store (or one of the layout before the segment log: start the node once to migrate it)",
            args.store.display()
        )));
    }
    let key = args.key.as_deref().map(crate::keyfile::load_public).transpose()?;
    let audit = audit_log(&args.store, key.as_ref(), crate::clock::now())
        .map_err(|e| CliError::Failed(e.to_string()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&audit).unwrap_or_default());
    } else {
        print!("{}", text(&audit));
    }
    if audit.is_consistent() {
        Ok(())
    } else {
        Err(CliError::Rejected { code: "log_inconsistent", message: audit.problems.join("; ") })
    }
}

fn text(audit: &LogAudit) -> String {
    let mut out = format!("log: {} leaves, root {}\n", audit.size, audit.root);
    out.push_str(&format!("stored hashes: {} checked", audit.stored_hashes));
    if audit.unhashed_leaves > 0 {
        out.push_str(&format!(
            " ({} leaves without stored hashes: hashed at the node's next start)",
            audit.unhashed_leaves
        ));
    }
    out.push('\n');
    let signatures =
        if audit.signatures_checked { "signatures checked" } else { "signatures not checked (no --key)" };
    match audit.checkpoints.last() {
        Some(last) => out.push_str(&format!(
            "own checkpoints: {} kept, the latest {} at size {}; {signatures}\n",
            audit.checkpoints.len(),
            last.origin,
            last.size
        )),
        None => out.push_str("own checkpoints: none kept (a clinic, or a relay that never committed)\n"),
    }
    match audit.parent_checkpoints.last() {
        Some(last) => out.push_str(&format!(
            "parent checkpoints: {} accepted, the latest {} at size {}\n",
            audit.parent_checkpoints.len(),
            last.origin,
            last.size
        )),
        None => out.push_str("parent checkpoints: none\n"),
    }
    out.push_str(&format!("evidence of parent log forks: {}\n", audit.log_forks.len()));
    for problem in &audit.problems {
        out.push_str(&format!("INCONSISTENT: {problem}\n"));
    }
    out.push_str(if audit.is_consistent() { "consistent\n" } else { "NOT consistent\n" });
    out
}
