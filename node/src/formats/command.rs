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
    /// Write the authoring file here instead of standard output (one FILE only).
    #[arg(long, conflicts_with = "out_dir")]
    pub out: Option<PathBuf>,
    /// Write each FILE's authoring file into this directory as <stem>.toml (several FILEs).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// The CSAF or CAP document(s); `-` for standard input. Every file is read and converted
    /// before anything is written: one bad file writes nothing.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
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

/// Runs `kairan advisory import`: converts every file first, then writes (a progress bar on a
/// terminal, a line per file otherwise, when there are several).
pub fn import(args: &ImportArgs) -> Result<(), CliError> {
    if args.files.len() > 1 && args.out_dir.is_none() {
        return Err(CliError::Usage("--out-dir: several files need a directory to write into".into()));
    }
    let from = match args.format {
        Format::Cap => "CAP 1.2",
        _ => "CSAF",
    };
    let mut progress = (args.files.len() > 1)
        .then(|| crate::progress::Progress::new("kairan advisory import", args.files.len() as u64));
    let mut converted = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let bytes = crate::cli::read_input(file)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CliError::Usage(format!("{} is not UTF-8", file.display())))?;
        let imported = import_document(&text, args.format)
            .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
        let toml = draft_toml(&imported.advisory, from, &imported.defaulted).map_err(CliError::Failed)?;
        if !imported.defaulted.is_empty() {
            eprintln!(
                "note: {}: defaulted (not in the document): {}",
                file.display(),
                imported.defaulted.join(", ")
            );
        }
        if let Some(progress) = &mut progress {
            progress.step(&file.display().to_string());
        }
        converted.push((file, toml));
    }
    let Some(dir) = &args.out_dir else {
        let (_, toml) = converted.first().ok_or_else(|| CliError::Usage("no FILE given".into()))?;
        return write_output(args.out.as_deref(), toml);
    };
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    for (file, toml) in &converted {
        let stem = file.file_stem().and_then(|s| s.to_str()).filter(|s| !s.is_empty() && *s != "-");
        let stem = stem
            .ok_or_else(|| CliError::Usage(format!("{}: no file name to name the output", file.display())))?;
        let path = dir.join(format!("{stem}.toml"));
        std::fs::write(&path, toml).map_err(|e| CliError::io(&path, e))?;
    }
    if let Some(progress) = progress {
        progress.finish(&format!("{} file(s) written to {}", converted.len(), dir.display()));
    }
    Ok(())
}
