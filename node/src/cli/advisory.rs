//! `kairan advisory sign`.

use std::path::PathBuf;

use clap::Args;

use kairan_protocol::Envelope;
use kairan_protocol::envelope::ADVISORY_TYPE;

use crate::clock;
use crate::draft::AdvisoryDraft;
use crate::error::CliError;
use crate::keyfile;

/// Arguments of `kairan advisory sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The origin's secret key file.
    #[arg(long)]
    pub key: PathBuf,
    /// The authoring file (TOML); `-` for standard input.
    pub file: PathBuf,
}

pub(super) fn sign(args: &SignArgs) -> Result<(), CliError> {
    let key = keyfile::load_secret(&args.key)?;
    let bytes = super::read_input(&args.file)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Usage(format!("{} is not UTF-8", args.file.display())))?;
    let draft =
        AdvisoryDraft::parse(&text).map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    let advisory = draft
        .into_advisory(clock::now(), None)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    let envelope = Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[&key]);
    println!("{}", String::from_utf8_lossy(&envelope.to_json()));
    Ok(())
}
