//! `kairan verify`: verify a delivery, an advisory envelope or a certificate, offline.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use kairan_protocol::envelope::{ADVISORY_TYPE, CERT_TYPE};
use kairan_protocol::limits::MAX_DELIVERY_BYTES;
use kairan_protocol::{
    CertSet, Delivery, Envelope, Error, RevocationSet, Timestamp, TrustBundle, VerifyContext,
};

use crate::clock;
use crate::error::CliError;
use crate::keyfile;
use crate::provenance::{CertLink, Provenance};

/// Arguments of `kairan verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The trust-anchors file.
    #[arg(long)]
    pub trust: PathBuf,
    /// Print the provenance as JSON.
    #[arg(long)]
    pub json: bool,
    /// Verify as of this time (RFC 3339) instead of now, e.g. to audit an expired advisory.
    #[arg(long, value_parser = super::keys::parse_time)]
    pub at: Option<Timestamp>,
    /// Extra certificate envelopes (for a bare advisory or certificate); repeatable.
    #[arg(long = "cert")]
    pub certs: Vec<PathBuf>,
    /// A trust bundle whose revocations apply.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// The delivery or envelope (JSON); `-` for standard input.
    pub file: PathBuf,
}

#[derive(Serialize)]
struct CertReport {
    verified: bool,
    chain: Vec<CertLink>,
}

#[derive(Serialize)]
struct Failure<'a> {
    verified: bool,
    reason: &'a str,
    message: String,
}

pub(super) fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let anchors = keyfile::load_trust(&args.trust)?;
    let now = args.at.unwrap_or_else(clock::now);
    let extra_certs = args.certs.iter().map(|p| keyfile::load_envelope(p)).collect::<Result<Vec<_>, _>>()?;
    let revocations = match &args.bundle {
        None => RevocationSet::default(),
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| CliError::io(path, e))?;
            let bundle = TrustBundle::from_json(&bytes)
                .and_then(|b| b.verify(&anchors, now))
                .map_err(|e| CliError::Usage(format!("trust bundle {}: {e}", path.display())))?;
            bundle.facts().revoked.clone()
        }
    };
    let ctx = VerifyContext { anchors: &anchors, revocations: &revocations, now };
    let input = super::read_input(&args.file)?;
    let outcome = verify_input(&input, extra_certs, ctx);
    match outcome {
        Ok(Report::Delivery(provenance)) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&provenance).unwrap_or_default());
            } else {
                print!("{}", provenance.render_text());
            }
            Ok(())
        }
        Ok(Report::Cert(chain)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&CertReport { verified: true, chain }).unwrap_or_default()
                );
            } else {
                println!("VERIFIED  certificate");
                for link in chain {
                    println!(
                        "  {} [{}] scope {} serial {} valid {} .. {}, issued by {}",
                        link.subject,
                        link.roles.join(","),
                        link.scope,
                        link.serial,
                        link.not_before,
                        link.not_after,
                        link.issued_by
                    );
                }
            }
            Ok(())
        }
        Err(error) => {
            if args.json {
                let failure = Failure { verified: false, reason: error.code(), message: error.to_string() };
                println!("{}", serde_json::to_string_pretty(&failure).unwrap_or_default());
            }
            Err(CliError::rejected(&error))
        }
    }
}

enum Report {
    Delivery(Box<Provenance>),
    Cert(Vec<CertLink>),
}

fn verify_input(input: &[u8], extra_certs: Vec<Envelope>, ctx: VerifyContext<'_>) -> Result<Report, Error> {
    if input.len() > MAX_DELIVERY_BYTES {
        return Err(Error::Oversize { what: "input", limit: MAX_DELIVERY_BYTES, actual: input.len() });
    }
    // Tell a delivery from an envelope by its top-level keys; each is then parsed strictly.
    let probe: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(input).map_err(|e| Error::MalformedEnvelope(e.to_string()))?;
    if probe.contains_key("advisory") {
        let mut delivery = Delivery::from_json(input)?;
        for cert in extra_certs {
            if !delivery.certs.contains(&cert) {
                delivery.certs.push(cert);
            }
        }
        let verified = kairan_protocol::verify_parsed(delivery, ctx)?;
        return Ok(Report::Delivery(Box::new(Provenance::of(&verified, ctx.anchors, ctx.now))));
    }
    let envelope = Envelope::from_json(input)?;
    match envelope.payload_type.as_str() {
        ADVISORY_TYPE => {
            let delivery = Delivery { advisory: envelope, certs: extra_certs, hops: Vec::new() };
            let verified = kairan_protocol::verify_parsed(delivery, ctx)?;
            Ok(Report::Delivery(Box::new(Provenance::of(&verified, ctx.anchors, ctx.now))))
        }
        CERT_TYPE => {
            let mut all = vec![envelope.clone()];
            all.extend(extra_certs.into_iter().filter(|c| *c != envelope));
            let set = CertSet::verify(&all, ctx.anchors, ctx.revocations, ctx.now)?;
            let index = set.certs().iter().position(|v| v.input_index == 0).unwrap_or_default();
            let provenance_chain = crate::provenance::cert_chain(&set, index, ctx.anchors);
            Ok(Report::Cert(provenance_chain))
        }
        other => Err(Error::WrongPayloadType {
            expected: format!("{ADVISORY_TYPE} or {CERT_TYPE}"),
            found: other.to_owned(),
        }),
    }
}
