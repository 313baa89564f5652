//! The `kairan` command line: argument definitions and dispatch.
//!
//! `main` parses arguments and calls [`run`]; every command returns a [`CliError`] whose
//! exit code `main` uses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::error::CliError;

mod advisory;
mod audit;
mod daemon;
mod enroll;
mod keys;
mod members;
mod revoke;
mod tls;
mod verify;

/// kairan: signed cybersecurity advisories relayed through Japan's medical associations.
#[derive(Debug, Parser)]
#[command(name = "kairan", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every `kairan` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 key pair: DIR/ID.key (secret, mode 0600) and DIR/ID.pub (hex).
    #[command(
        after_help = "Example:\n  kairan keygen --name mhlw --out keys/\n  # writes keys/mhlw.key and keys/mhlw.pub"
    )]
    Keygen {
        /// Key name (also the file stem): letters, digits, '-', '_', '.'.
        #[arg(long)]
        name: String,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate a clinic's recipient key for sealed (TLP:AMBER+STRICT / TLP:RED) advisories:
    /// FILE holds the X25519 seed (64 hex, mode 0600); prints the public key and its kid, which
    /// the district lists in its recipient directory. Point clinic.toml's
    /// `[clinic] recipient_key` at FILE.
    #[command(
        after_help = "Example:\n  kairan keygen-recipient --out keys/chuo-clinic-1.x25519\n  # writes the secret (0600); prints `public key <hex>` and `kid <16 hex>`"
    )]
    KeygenRecipient {
        /// The recipient key file to write (refuses to overwrite; its directory is created).
        #[arg(long)]
        out: PathBuf,
    },
    /// Author and sign advisories.
    #[command(subcommand)]
    Advisory(AdvisoryCommand),
    /// Issue certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Make the trust-anchors file.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Manage a node's members file (who may connect to its broker, as what).
    #[command(subcommand)]
    Members(MembersCommand),
    /// Enroll clinics: the clinic makes its keys and a signed request; its district certifies
    /// it, admits it to its broker and lists its recipient key in its directory.
    #[command(subcommand)]
    Enroll(enroll::EnrollCommand),
    /// Configure an external broker from the permission table.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// TLS: a relay broker's certificate for its kairan key.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Revoke a certified key from a time on: writes a trust bundle with the signed revocation.
    #[command(
        after_help = "Examples:\n  # root revocation of an origin key (2 of 3 root keys):\n  kairan revoke --cert mhlw.cert.json --issuer-key keys/root-1.key --issuer-key keys/root-2.key \\\n      --reason \"key compromised\" --out revocation.json\n  # a prefecture revokes one of its districts:\n  kairan revoke --cert jp-13-chuo.cert.json --issuer-key keys/jp-13.key --issuer-cert jp-13.cert.json \\\n      --chain jp.cert.json --reason \"server retired\" --out revocation.json\n  kairan trust push --to mqtts://relay.jp.example:8883 --trust trust.toml --username admin --password-file admin.secret revocation.json"
    )]
    Revoke(revoke::RevokeArgs),
    /// Verify an advisory envelope, a certificate or a delivery and print its provenance.
    #[command(
        after_help = "Examples:\n  kairan verify --trust trust.toml delivery.json\n  kairan verify --trust trust.toml --cert mhlw.cert.json advisory.json --json\n\nExit status: 0 verified; 1 refused (the reason code is printed); 64 bad arguments."
    )]
    Verify(verify::VerifyArgs),
    /// Audit a node's records offline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run a relay node (national, prefectural or district association).
    #[command(
        after_help = "Examples:\n  kairan node generate-config > node.toml\n  kairan node --config node.toml\n  KAIRAN__UPSTREAM__PASSWORD=... kairan node --config node.toml --log-format json\n\nExit status: 0 after a clean shutdown (SIGINT/SIGTERM); 64 bad configuration (the field is named)."
    )]
    Node(daemon::NodeArgs),
    /// Run the clinic subscriber: verify and keep advisories from the district, show new ones.
    #[command(
        after_help = "Examples:\n  kairan clinic generate-config > clinic.toml\n  kairan clinic --config clinic.toml"
    )]
    Clinic(daemon::ClinicArgs),
    /// Read the clinic inbox (also while `kairan clinic` runs); every entry is verified again.
    #[command(
        after_help = "Examples:\n  kairan inbox --config clinic.toml list\n  kairan inbox --config clinic.toml show 3f2a9c"
    )]
    Inbox(daemon::InboxArgs),
    /// Sign and publish an advisory to the national node's ingest topic (next seq and prev
    /// from the origin's state file); succeeds only once the broker acknowledged it.
    #[command(
        after_help = "Example:\n  kairan publish --key keys/mhlw.key --cert certs/mhlw.cert.json --trust trust.toml \\\n      --to mqtts://relay.jp.example:8883 --node jp --password-file mhlw.secret samples/01-ransomware.toml\n  # TLP:AMBER+STRICT to every clinic of a district, TLP:RED to named clinics (keys from the\n  # verified recipient directories on the national broker):\n  kairan publish ... --seal-to-scope jp/13/chuo strict.toml\n  kairan publish ... --seal-to chuo-clinic-1 --seal-to chuo-clinic-2 red.toml\n\nExit codes: 0 stored (the national node's signed acceptance verified), 75 published but not confirmed\nwithin --wait (run again: the same bytes go first), 64 bad arguments, 70 other failures."
    )]
    Publish(daemon::PublishArgs),
    /// Run a whole hierarchy on this machine: root, origin, national, 2 prefectures, 2 districts
    /// each, 3 clinics each; publish the samples and a forgery; check every inbox.
    #[command(
        after_help = "Example:\n  kairan demo            # exits 0 only if every clinic holds exactly its advisories\n  kairan demo --keep     # keep the data directory"
    )]
    #[cfg(feature = "harness")]
    Demo {
        /// Keep the data directory instead of removing it.
        #[arg(long)]
        keep: bool,
        /// Show the nodes' logs (warnings and above otherwise).
        #[arg(long)]
        verbose: bool,
    },
    /// Measure end-to-end latency and throughput of a whole tree at 10, 100 and 1,000 clinics,
    /// beside a chain of Mosquitto bridges (when `mosquitto` is installed).
    #[command(
        after_help = "Example:\n  ulimit -n 65536 && kairan bench --out docs/performance.md\n  kairan bench --clinics 10,100 --samples 50 --no-mosquitto"
    )]
    #[cfg(feature = "harness")]
    Bench(crate::harness::bench::BenchArgs),
    /// Measure recovery: a district catching up advisories it missed, and a revocation
    /// reaching every node of the demo tree (real nodes, MQTT and stores on this machine).
    #[command(after_help = "Example:\n  kairan bench-recovery --missed 10000")]
    #[cfg(feature = "harness")]
    BenchRecovery {
        /// Advisories the district misses while it is down.
        #[arg(long, default_value_t = 10_000)]
        missed: usize,
    },
    /// Measure the memory of a `kairan clinic` process (a separate process, as on an office
    /// PC) after it received N advisories from a tree running in this process.
    #[command(after_help = "Example:\n  kairan bench-clinic --advisories 1000")]
    BenchClinic {
        /// Advisories the clinic receives.
        #[arg(long, default_value_t = 1_000)]
        advisories: usize,
    },
}

/// `kairan advisory …`
#[derive(Debug, Subcommand)]
pub enum AdvisoryCommand {
    /// Print a valid advisory authoring file (TOML, Japanese and English).
    #[command(after_help = "Example:\n  kairan advisory template > advisory.toml")]
    Template,
    /// Sign an authoring file with an origin key; print the DSSE envelope (JSON) on stdout.
    #[command(
        after_help = "Examples:\n  kairan advisory sign --key keys/mhlw.key advisory.toml > advisory.json\n  kairan advisory template | kairan advisory sign --key keys/mhlw.key -"
    )]
    Sign(advisory::SignArgs),
    /// Export an advisory (signed envelope, delivery or authoring file) as CSAF 2.0/2.1, CAP 1.2
    /// or STIX 2.1. The signature is not checked here: use `kairan verify` for that.
    #[command(
        after_help = "Examples:\n  kairan advisory export --format csaf advisory.json > advisory.csaf.json\n  kairan advisory export --format cap --out alert.xml delivery.json\n  kairan advisory export --format stix samples/03-movable-type.toml\n\nFormats: csaf (CSAF 2.0), csaf-2.1, cap (CAP 1.2), stix (STIX 2.1). See docs/formats.md."
    )]
    Export(crate::formats::command::ExportArgs),
    /// Import a CSAF (2.0 or 2.1) or CAP 1.2 document as an authoring file (TOML) to review and sign.
    #[command(
        after_help = "Example:\n  kairan advisory import --format csaf vendor-advisory.json --out advisory.toml\n  kairan advisory sign --key keys/mhlw.key advisory.toml"
    )]
    Import(crate::formats::command::ImportArgs),
}

/// `kairan audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify a node's transparency log and checkpoint history for consistency: rebuild the
    /// tree from the stored deliveries, check the stored hashes, every checkpoint the node
    /// signed, the parent's checkpoints it accepted, and list kept evidence of a parent's
    /// inconsistent logs. Reads the store's segment files only.
    #[command(
        after_help = "Examples:\n  kairan audit log --store /var/lib/kairan --key keys/jp.pub   # a relay's data_dir and public key\n  kairan audit log --store /var/lib/kairan-clinic/store --json\n\nExit status: 0 consistent; 1 inconsistent (each problem is printed, the reason code is log_inconsistent); 64 not a store; 70 unreadable."
    )]
    Log(audit::AuditLogArgs),
    /// One advisory's provenance from one or more nodes' stores: who wrote it (certificate
    /// chain to a root), every hop with its times, and its inclusion in each relay's
    /// transparency log (signed checkpoint + inclusion proof), all verified.
    #[command(
        after_help = "Example:\n  kairan audit advisory mhlw-2026-0012 --trust trust.toml --store /var/lib/kairan-clinic/store --store /var/lib/kairan\n\nExit status: 0 verified; 1 a piece of evidence does not verify; 64 not found, not a store, bad arguments."
    )]
    Advisory(audit::AuditAdvisoryArgs),
    /// Write one advisory's evidence (the deliveries, each relay's checkpoint and inclusion
    /// proof) to a file that `kairan audit verify-bundle` checks with only the trust anchors.
    Bundle(audit::AuditBundleArgs),
    /// Verify an audit bundle offline with only the trust anchors.
    #[command(after_help = "Exit status: 0 verified; 1 refused (the reason is printed); 64 bad arguments.")]
    VerifyBundle(audit::VerifyBundleArgs),
}

/// `kairan members …`
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Add (or replace) a member, its password hashed as Mosquitto hashes them.
    #[command(
        after_help = "Examples:\n  kairan members add --members members.toml --id clinic-0001 --kind clinic --scope jp/13/chuo \\\n      --password-file clinic-0001.secret\n  kairan members add --members members.toml --id jp-13-chuo --kind relay --cert certs/jp-13-chuo.cert.json \\\n      --password-file jp-13-chuo.secret"
    )]
    Add(members::AddArgs),
}

/// `kairan broker …`
#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Write Mosquitto's password file, ACL and configuration from the members files of the
    /// nodes that use it: every client may do exactly what kairan's permission table allows.
    #[command(
        after_help = "Example:\n  kairan broker mosquitto-config --config /etc/kairan/node.toml --listen 0.0.0.0:8883 --out /etc/mosquitto/kairan\n  mosquitto -c /etc/mosquitto/kairan/mosquitto.conf\n\nWith TLS (the default) it also writes each node's certificate and key (`kairan tls cert`) and\none TLS 1.3 listener per node: give one --listen per --config."
    )]
    MosquittoConfig(members::MosquittoArgs),
    /// Write RabbitMQ's definitions (users, permissions, topic permissions) and rabbitmq.conf
    /// for its MQTT plugin from the members files of the nodes that use it: every client may
    /// do exactly what kairan's permission table allows (members need `--rabbitmq` hashes).
    #[command(
        after_help = "Example:\n  kairan broker rabbitmq-config --config /etc/kairan/node.toml --listen 0.0.0.0:1883 \\\n      --out /etc/rabbitmq/kairan\n  # then point RABBITMQ_CONFIG_FILE at /etc/rabbitmq/kairan/rabbitmq.conf (see deploy/rabbitmq/)"
    )]
    RabbitmqConfig(members::RabbitArgs),
}

/// `kairan tls …`
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write the TLS certificate of a relay's broker: an X.509 certificate for the relay's own
    /// Ed25519 key carrying its kairan certificates, and the key (PKCS#8), as PEM files that
    /// Mosquitto (`certfile`, `keyfile`) and RabbitMQ (`ssl_options`) load. Children accept
    /// the broker only if the key is certified as the relay they are configured for.
    #[command(
        after_help = "Examples:\n  kairan tls cert --config /etc/kairan/node.toml --out /etc/mosquitto/kairan\n  kairan tls cert --key keys/jp-13.key --cert certs/jp-13.cert.json --chain certs/jp.cert.json --out tls/\n\nWrite it again after a key rotation or a renewal, and reload the broker; children accept the\nprevious certificate until it expires or is revoked."
    )]
    Cert(tls::CertArgs),
}

/// `kairan cert …`
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a certificate for a public key, signed by an issuer key (and its certificate), or
    /// by a threshold of root keys when no --issuer-cert is given.
    #[command(
        after_help = "Examples:\n  # root-issued (2 of 3 root keys) certificate for the national relay:\n  kairan cert issue --subject jp --subject-key keys/jp.pub --role relay --scope jp \\\n      --issuer-key keys/root-1.key --issuer-key keys/root-2.key --out certs/jp.cert.json\n  # the national relay certifies Tokyo's prefectural relay:\n  kairan cert issue --subject jp-13 --subject-key keys/jp-13.pub --role relay --scope jp/13 \\\n      --issuer-key keys/jp.key --issuer-cert certs/jp.cert.json --out certs/jp-13.cert.json"
    )]
    Issue(keys::CertIssueArgs),
}

/// `kairan trust …`
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Write a trust-anchors file from root public keys and a threshold.
    #[command(
        after_help = "Example:\n  kairan trust init --threshold 2 --root keys/root-1.pub --root keys/root-2.pub \\\n      --root keys/root-3.pub --out trust.toml"
    )]
    Init(keys::TrustInitArgs),
    /// Push a trust bundle (e.g. a revocation) into the national node's control topic; it
    /// reaches every relay and clinic through the retained trust topics.
    #[command(
        after_help = "Example:\n  kairan trust push --to mqtts://relay.jp.example:8883 --trust trust.toml --node jp --username admin \\\n      --password-file admin.secret revocation.json"
    )]
    Push(revoke::PushArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Keygen { name, out } => keys::keygen(&name, &out),
        Command::KeygenRecipient { out } => keys::keygen_recipient(&out),
        Command::Advisory(AdvisoryCommand::Template) => {
            print!("{}", crate::draft::TEMPLATE);
            Ok(())
        }
        Command::Advisory(AdvisoryCommand::Sign(args)) => advisory::sign(&args),
        Command::Advisory(AdvisoryCommand::Export(args)) => crate::formats::command::export(&args),
        Command::Advisory(AdvisoryCommand::Import(args)) => crate::formats::command::import(&args),
        Command::Cert(CertCommand::Issue(args)) => keys::cert_issue(&args),
        Command::Trust(TrustCommand::Init(args)) => keys::trust_init(&args),
        Command::Trust(TrustCommand::Push(args)) => revoke::push(&args),
        Command::Revoke(args) => revoke::revoke(&args),
        Command::Members(MembersCommand::Add(args)) => members::add(&args),
        Command::Enroll(command) => enroll::run(&command),
        Command::Broker(BrokerCommand::MosquittoConfig(args)) => members::mosquitto(&args),
        Command::Broker(BrokerCommand::RabbitmqConfig(args)) => members::rabbitmq(&args),
        Command::Tls(TlsCommand::Cert(args)) => tls::cert(&args),
        Command::Verify(args) => verify::verify(&args),
        Command::Audit(AuditCommand::Log(args)) => audit::log(&args),
        Command::Audit(AuditCommand::Advisory(args)) => audit::advisory(&args),
        Command::Audit(AuditCommand::Bundle(args)) => audit::bundle(&args),
        Command::Audit(AuditCommand::VerifyBundle(args)) => audit::verify_bundle_file(&args),
        Command::Node(args) => daemon::node(&args),
        Command::Clinic(args) => daemon::clinic(&args),
        Command::Inbox(args) => daemon::inbox(&args),
        Command::Publish(args) => daemon::publish(&args),
        #[cfg(feature = "harness")]
        Command::Demo { keep, verbose } => {
            crate::logging::init(None, Some(if verbose { "info" } else { "warn" }));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Failed(e.to_string()))?;
            runtime.block_on(crate::harness::demo::run(crate::harness::demo::DemoOptions {
                keep,
                ..Default::default()
            }))
        }
        #[cfg(feature = "harness")]
        Command::Bench(args) => crate::harness::bench::cli(&args),
        #[cfg(feature = "harness")]
        Command::BenchClinic { advisories } => {
            crate::logging::init(None, Some("warn"));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Failed(e.to_string()))?;
            let memory = runtime.block_on(crate::harness::clinic_bench::clinic_memory(advisories))?;
            println!(
                "kairan clinic process: {} KiB RSS idle, {} KiB RSS after receiving {} advisories (peak {} KiB); received in {:.1} s",
                memory.idle_kib,
                memory.rss_kib,
                memory.advisories,
                memory.peak_kib,
                memory.received_in.as_secs_f64()
            );
            Ok(())
        }
        Command::BenchRecovery { missed } => {
            crate::logging::init(None, Some("warn"));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Failed(e.to_string()))?;
            runtime.block_on(async {
                let reach = crate::harness::recovery_bench::revocation_reach().await?;
                println!("revocation reached all 7 relays and 12 clinics of the demo tree in {:.1} ms", reach.as_secs_f64() * 1000.0);
                let figures = crate::harness::recovery_bench::catch_up(missed).await?;
                println!(
                    "catch-up of {} missed advisories: district {:.1} s, its clinic {:.1} s (publishing the backlog took {:.1} s)",
                    figures.missed,
                    figures.district_caught_up.as_secs_f64(),
                    figures.clinic_caught_up.as_secs_f64(),
                    figures.publish_time.as_secs_f64()
                );
                Ok(())
            })
        }
    }
}

/// Reads a file, or standard input for `-`.
pub(crate) fn read_input(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    if path.as_os_str() == "-" {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer).map_err(|e| CliError::io(path, e))?;
        Ok(buffer)
    } else {
        std::fs::read(path).map_err(|e| CliError::io(path, e))
    }
}
