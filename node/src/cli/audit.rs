//! `kairan audit …`: a node's transparency log and checkpoint history (`log`); one advisory's
//! provenance with every relay's log inclusion (`advisory`), as a file an auditor checks
//! offline with only the trust anchors (`bundle`, `verify-bundle`; [`crate::audit_bundle`]).

use std::path::PathBuf;

use clap::Args;

use kairan_protocol::TrustAnchors;

use crate::audit_bundle::{AuditBundle, AuditError, AuditReport, collect, verify_bundle};
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

/// Where the evidence of `kairan audit advisory` and `audit bundle` comes from.
#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// The advisory: its digest (`sha256:…`) or its id.
    pub advisory: String,
    /// A node's store directory (a relay's `data_dir`, a clinic's `data_dir/store`); repeat
    /// it to gather the log evidence of every relay on the path. Only read, never written.
    #[arg(long = "store", required = true)]
    pub stores: Vec<PathBuf>,
    /// The trust-anchors file (to find an advisory by id, and to verify).
    #[arg(long)]
    pub trust: PathBuf,
}

/// Arguments of `kairan audit advisory`.
#[derive(Debug, Args)]
pub struct AuditAdvisoryArgs {
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `kairan audit bundle`.
#[derive(Debug, Args)]
pub struct AuditBundleArgs {
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    /// The bundle file to write (JSON; refuses to overwrite).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `kairan audit verify-bundle`.
#[derive(Debug, Args)]
pub struct VerifyBundleArgs {
    /// The bundle file (`-` for standard input).
    pub file: PathBuf,
    /// The trust-anchors file: the only thing trusted.
    #[arg(long)]
    pub trust: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn audit_error(error: AuditError) -> CliError {
    match error {
        AuditError::Store { .. } => CliError::Usage(error.to_string()),
        AuditError::NotFound(message) => CliError::Usage(message),
        AuditError::Malformed(_) => {
            CliError::Rejected { code: "malformed_payload", message: error.to_string() }
        }
        AuditError::Refused { .. } => {
            CliError::Rejected { code: "evidence_refused", message: error.to_string() }
        }
    }
}

fn collect_bundle(args: &EvidenceArgs) -> Result<(AuditBundle, TrustAnchors), CliError> {
    let anchors = crate::keyfile::load_trust(&args.trust)?;
    let mut progress = crate::progress::Progress::new("audit", args.stores.len() as u64);
    let bundle = collect(&args.stores, &args.advisory, &anchors, &mut progress).map_err(audit_error)?;
    progress.finish(&format!("evidence of {} gathered", bundle.advisory));
    Ok((bundle, anchors))
}

fn print_report(report: &AuditReport, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
    } else {
        print!("{}", report.render_text());
    }
}

pub(super) fn advisory(args: &AuditAdvisoryArgs) -> Result<(), CliError> {
    let (bundle, anchors) = collect_bundle(&args.evidence)?;
    let report = verify_bundle(&bundle, &anchors).map_err(audit_error)?;
    print_report(&report, args.json);
    Ok(())
}

pub(super) fn bundle(args: &AuditBundleArgs) -> Result<(), CliError> {
    let (bundle, anchors) = collect_bundle(&args.evidence)?;
    // What is written must verify: never hand an auditor a bundle that fails.
    let report = verify_bundle(&bundle, &anchors).map_err(audit_error)?;
    let mut json = serde_json::to_vec_pretty(&bundle).map_err(|e| CliError::Failed(e.to_string()))?;
    json.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.out)
        .map_err(|e| CliError::io(&args.out, e))?;
    std::io::Write::write_all(&mut file, &json).map_err(|e| CliError::io(&args.out, e))?;
    file.sync_all().map_err(|e| CliError::io(&args.out, e))?;
    println!(
        "wrote {}: advisory {}, {} hops, log inclusion from {} relay(s){}",
        args.out.display(),
        bundle.advisory,
        report.provenance.hops.len(),
        report.logs.len(),
        if report.unlogged.is_empty() {
            String::new()
        } else {
            format!(" (none from {})", report.unlogged.join(", "))
        }
    );
    Ok(())
}

pub(super) fn verify_bundle_file(args: &VerifyBundleArgs) -> Result<(), CliError> {
    let anchors = crate::keyfile::load_trust(&args.trust)?;
    let bytes = super::read_input(&args.file)?;
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(CliError::Rejected {
            code: "oversize_input",
            message: format!("{} bytes, at most {MAX_BUNDLE_BYTES}", bytes.len()),
        });
    }
    let bundle: AuditBundle =
        serde_json::from_slice(&bytes).map_err(|e| audit_error(AuditError::Malformed(e.to_string())))?;
    let report = verify_bundle(&bundle, &anchors).map_err(audit_error)?;
    print_report(&report, args.json);
    Ok(())
}

/// A bundle holds a few deliveries (≤ 64 KiB each) and proofs: 8 MiB is far beyond any.
const MAX_BUNDLE_BYTES: usize = 8 << 20;
