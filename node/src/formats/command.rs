//! `kairan advisory export` and `kairan advisory import`: files in, files (or stdout) out.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{Format, draft_toml, export as export_advisory, import as import_document, load};
use crate::clock;
use crate::error::CliError;

/// Arguments of `kairan advisory export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// csaf (CSAF 2.0), csaf-2.1, cap (CAP 1.2 XML) or stix (STIX 2.1 bundle).
    #[arg(long)]
    pub format: Format,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A signed advisory envelope (JSON), a delivery (JSON) or an authoring file (TOML); `-`
    /// for standard input.
    pub file: PathBuf,
}

/// Arguments of `kairan advisory import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// csaf (CSAF 2.0 or 2.1, read from `csaf_version`) or cap (CAP 1.2 XML).
    #[arg(long)]
    pub format: Format,
    /// Write the authoring file here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The CSAF or CAP document; `-` for standard input.
    pub file: PathBuf,
}

fn write_output(out: Option<&Path>, text: &str) -> Result<(), CliError> {
    match out {
        Some(path) => std::fs::write(path, text).map_err(|e| CliError::io(path, e)),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Runs `kairan advisory export`.
pub fn export(args: &ExportArgs) -> Result<(), CliError> {
    let bytes = crate::cli::read_input(&args.file)?;
    let usage = |e: super::FormatError| CliError::Usage(format!("{}: {e}", args.file.display()));
    let loaded = load(&bytes, clock::now()).map_err(usage)?;
    let exported = export_advisory(&loaded.advisory, &loaded.digest, args.format).map_err(usage)?;
    if !loaded.signed {
        eprintln!(
            "note: {} is an authoring file; the export names the digest `kairan advisory sign` will give it",
            args.file.display()
        );
    }
    for warning in &exported.warnings {
        eprintln!("warning: {warning}");
    }
    write_output(args.out.as_deref(), &exported.text)
}

/// Runs `kairan advisory import`.
pub fn import(args: &ImportArgs) -> Result<(), CliError> {
    let bytes = crate::cli::read_input(&args.file)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Usage(format!("{} is not UTF-8", args.file.display())))?;
    let imported = import_document(&text, args.format)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    let from = match args.format {
        Format::Cap => "CAP 1.2",
        _ => "CSAF",
    };
    let toml = draft_toml(&imported.advisory, from, &imported.defaulted).map_err(CliError::Failed)?;
    if !imported.defaulted.is_empty() {
        eprintln!("note: defaulted (not in the document): {}", imported.defaulted.join(", "));
    }
    write_output(args.out.as_deref(), &toml)
}
