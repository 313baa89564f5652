//! `kairan enroll request | issue | remove`: clinic enrollment ([`crate::enroll`]).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::config::NodeConfig;
use crate::enroll::{self, District};
use crate::error::CliError;

/// `kairan enroll …`
#[derive(Debug, Subcommand)]
pub enum EnrollCommand {
    /// At the clinic: make the clinic's signing key (DIR/ID.key, ID.pub), its recipient key
    /// (DIR/ID.x25519), all secrets mode 0600, and DIR/ID.request.json to hand to the district.
    #[command(
        after_help = "Example:\n  kairan enroll request --id chuo-clinic-1 --out /etc/kairan/clinic\n  # give chuo-clinic-1.request.json to the district; read the printed key id to them"
    )]
    Request(RequestArgs),
    /// At the district: verify a request, certify the clinic with the district relay's key,
    /// add it to the members file (a fresh broker password) and its recipient key to the
    /// recipients file; write the clinic's certificate and password into --out.
    #[command(
        after_help = "Example:\n  kairan enroll issue --config /etc/kairan/node.toml --request chuo-clinic-1.request.json --out for-clinic/\n  # then restart the district node (it reads its members file at start)\n\nExit status: 0 enrolled; 1 the request is refused (proof of possession); 64 bad arguments or configuration."
    )]
    Issue(IssueArgs),
    /// At the district: take a clinic out of the members and recipients files (its next
    /// directory version no longer lists it; revoke its certificate with `kairan revoke`).
    #[command(
        after_help = "Example:\n  kairan enroll remove --config /etc/kairan/node.toml --id chuo-clinic-1"
    )]
    Remove(RemoveArgs),
}

/// Arguments of `kairan enroll request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The clinic's id: letters, digits, '-', '_', '.'.
    #[arg(long)]
    pub id: String,
    /// Directory to write the keys and the request into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `kairan enroll issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The district relay's node.toml (`broker.members` and `node.recipients` must be set).
    #[arg(long)]
    pub config: PathBuf,
    /// The clinic's request file.
    #[arg(long)]
    pub request: PathBuf,
    /// Directory to write ID.cert.json and ID.password (mode 0600) for the clinic into.
    #[arg(long)]
    pub out: PathBuf,
    /// Days of validity of the clinic's certificate.
    #[arg(long, default_value_t = 365)]
    pub valid_days: u32,
    /// Also store the password as RabbitMQ keeps it (a district whose broker is RabbitMQ).
    #[arg(long)]
    pub rabbitmq: bool,
}

/// Arguments of `kairan enroll remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The district relay's node.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// The clinic's id.
    #[arg(long)]
    pub id: String,
}

/// Runs `kairan enroll …`.
pub fn run(command: &EnrollCommand) -> Result<(), CliError> {
    match command {
        EnrollCommand::Request(args) => request(args),
        EnrollCommand::Issue(args) => issue(args),
        EnrollCommand::Remove(args) => remove(args),
    }
}

fn request(args: &RequestArgs) -> Result<(), CliError> {
    let files = enroll::request(&args.id, &args.out)?;
    println!("signing key    {}  (mode 0600)", files.signing_key.display());
    println!(
        "recipient key  {}  (mode 0600; clinic.toml [clinic] recipient_key)",
        files.recipient_key.display()
    );
    println!("request        {}  (give it to your district)", files.request.display());
    println!("key id         {}  (read it to the district volunteer to confirm)", files.payload.key.keyid());
    println!("recipient kid  {}", files.payload.recipient_key.kid());
    Ok(())
}

/// The district's config and the two files `kairan enroll` changes, each named by its field.
fn district_files(config: &NodeConfig) -> Result<(&Path, &Path), CliError> {
    let members = config.members_path.as_deref().ok_or_else(|| {
        CliError::Config(
            "broker.members: missing: the district's members file (clinics connect with it)".into(),
        )
    })?;
    let recipients = config.recipients.as_deref().ok_or_else(|| {
        CliError::Config(
            "node.recipients: missing: the district's recipients file, e.g. recipients = \"recipients.toml\" next to the members file".into(),
        )
    })?;
    Ok((members, recipients))
}

fn issue(args: &IssueArgs) -> Result<(), CliError> {
    let config = NodeConfig::load(&args.config)?;
    let (members, recipients) = district_files(&config)?;
    let district =
        District { id: &config.id, key: &config.key, cert: &config.cert_info, members, recipients };
    enroll::check_district(&district)?;
    let bytes = super::read_input(&args.request)?;
    let request = enroll::verify_request(&bytes)?;
    let cert_path = args.out.join(format!("{}.cert.json", request.id));
    let password_path = args.out.join(format!("{}.password", request.id));
    for path in [&cert_path, &password_path] {
        if path.exists() {
            return Err(CliError::Usage(format!(
                "{} already exists; refusing to overwrite it",
                path.display()
            )));
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| CliError::io(&args.out, e))?;
    let issued = enroll::issue(&district, &request, args.valid_days, args.rabbitmq)?;
    let mut json = issued.cert.to_json();
    json.push(b'\n');
    std::fs::write(&cert_path, json).map_err(|e| CliError::io(&cert_path, e))?;
    crate::secrets::write_private(&password_path, format!("{}\n", issued.password).as_bytes())
        .map_err(|e| CliError::io(&password_path, e))?;
    println!("enrolled       {} at {} (scope {})", request.id, config.id, issued.scope);
    println!("key id         {}  (check it with the clinic)", request.key.keyid());
    println!("certificate    {} serial {}", cert_path.display(), issued.serial);
    println!("password       {}  (mode 0600; clinic.toml [upstream] password_file)", password_path.display());
    println!("members file   {}  (+ {}, kind clinic)", members.display(), request.id);
    println!(
        "recipients     {}  (+ {}, kid {})",
        recipients.display(),
        request.id,
        request.recipient_key.kid()
    );
    println!(
        "next           restart the district node so its broker admits the clinic; its directory gets a new version"
    );
    Ok(())
}

fn remove(args: &RemoveArgs) -> Result<(), CliError> {
    let config = NodeConfig::load(&args.config)?;
    let (members, recipients) = district_files(&config)?;
    let district =
        District { id: &config.id, key: &config.key, cert: &config.cert_info, members, recipients };
    enroll::remove(&district, &args.id)?;
    println!("removed        {} from {} and {}", args.id, members.display(), recipients.display());
    println!(
        "next           restart the district node; revoke the clinic's certificate with kairan revoke if its key is no longer trusted"
    );
    Ok(())
}
