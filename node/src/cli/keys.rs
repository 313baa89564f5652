//! `kairan keygen`, `kairan keygen-recipient`, `kairan cert issue`, `kairan trust init`.

use std::path::{Path, PathBuf};

use clap::Args;

use kairan_protocol::cert::ROOT_ISSUER;
use kairan_protocol::trust::RootKey;
use kairan_protocol::{Certificate, Role, Scope, Timestamp, TrustAnchors, TrustAnchorsFile};

use crate::clock;
use crate::error::CliError;
use crate::keyfile;

pub(super) fn keygen(name: &str, out: &Path) -> Result<(), CliError> {
    let (secret, paths) = keyfile::generate(out, name)?;
    println!("secret key  {}  (mode 0600: keep it offline if it is a root key)", paths.secret.display());
    println!("public key  {}", paths.public.display());
    println!("key id      {}", secret.keyid());
    Ok(())
}

/// `kairan keygen-recipient --out FILE`: the lines it prints after writing FILE.
pub(super) fn keygen_recipient(out: &Path) -> Result<(), CliError> {
    print!("{}", recipient_report(out, &keyfile::generate_recipient(out)?));
    Ok(())
}

fn recipient_report(out: &Path, secret: &kairan_protocol::sealed::RecipientSecret) -> String {
    format!(
        "recipient key  {}  (mode 0600; set [clinic] recipient_key in clinic.toml to it)\n\
         public key     {}\n\
         kid            {}\n",
        out.display(),
        secret.public().to_hex(),
        secret.public().kid()
    )
}

/// Arguments of `kairan cert issue`.
#[derive(Debug, Args)]
pub struct CertIssueArgs {
    /// The subject's id (origin id, node id, clinic id).
    #[arg(long)]
    pub subject: String,
    /// The subject's public key file (ID.pub).
    #[arg(long)]
    pub subject_key: PathBuf,
    /// Role(s) granted: origin, relay, clinic (repeatable).
    #[arg(long = "role", required = true, value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// Scope granted, e.g. jp/13.
    #[arg(long)]
    pub scope: Scope,
    /// Issuer secret key file; repeat for each root key of a root-issued certificate.
    #[arg(long = "issuer-key", required = true)]
    pub issuer_keys: Vec<PathBuf>,
    /// The issuer's own certificate; absent for a root-issued certificate.
    #[arg(long)]
    pub issuer_cert: Option<PathBuf>,
    /// Start of validity (RFC 3339); default now.
    #[arg(long, value_parser = parse_time)]
    pub not_before: Option<Timestamp>,
    /// Days of validity.
    #[arg(long, default_value_t = 365)]
    pub valid_days: u32,
    /// Serial; default ISSUER-<unix ms>.
    #[arg(long)]
    pub serial: Option<String>,
    /// Output file (the certificate envelope, JSON); stdout if absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub(crate) fn parse_role(text: &str) -> Result<Role, String> {
    match text {
        "origin" => Ok(Role::Origin),
        "relay" => Ok(Role::Relay),
        "clinic" => Ok(Role::Clinic),
        other => Err(format!("unknown role {other:?}: expected origin, relay or clinic")),
    }
}

pub(crate) fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 time"))
}

pub(super) fn cert_issue(args: &CertIssueArgs) -> Result<(), CliError> {
    let subject_key = keyfile::load_public(&args.subject_key)?;
    let issuer_keys =
        args.issuer_keys.iter().map(|path| keyfile::load_secret(path)).collect::<Result<Vec<_>, _>>()?;
    let issuer = match &args.issuer_cert {
        None => ROOT_ISSUER.to_owned(),
        Some(path) => {
            let envelope = keyfile::load_envelope(path)?;
            let parent = Certificate::decode(&envelope.payload)
                .map_err(|e| CliError::Usage(format!("issuer certificate {}: {e}", path.display())))?;
            let [issuer_key] = &issuer_keys[..] else {
                return Err(CliError::Usage("a relay issues with exactly one --issuer-key".into()));
            };
            if parent.key != *issuer_key.public() {
                return Err(CliError::Usage(format!(
                    "--issuer-key is not the key certified by {} ({})",
                    path.display(),
                    parent.subject
                )));
            }
            if !parent.scope.contains(&args.scope) {
                return Err(CliError::Usage(format!(
                    "scope {} is outside the issuer's scope {}",
                    args.scope, parent.scope
                )));
            }
            parent.subject
        }
    };
    let not_before = args.not_before.unwrap_or_else(clock::now);
    let cert = Certificate {
        serial: args.serial.clone().unwrap_or_else(|| format!("{issuer}-{}", clock::now().unix_ms())),
        issuer,
        subject: args.subject.clone(),
        key: subject_key,
        roles: args.roles.clone(),
        scope: args.scope.clone(),
        not_before,
        not_after: not_before.plus_secs(i64::from(args.valid_days) * 24 * 3600),
    };
    let signers: Vec<_> = issuer_keys.iter().collect();
    let envelope = crate::enroll::sign_certificate(&cert, &signers)?;
    let mut json = envelope.to_json();
    json.push(b'\n');
    match &args.out {
        Some(path) => {
            std::fs::write(path, &json).map_err(|e| CliError::io(path, e))?;
            eprintln!("certificate {} for {} written to {}", cert.serial, cert.subject, path.display());
        }
        None => print!("{}", String::from_utf8_lossy(&json)),
    }
    Ok(())
}

/// Arguments of `kairan trust init`.
#[derive(Debug, Args)]
pub struct TrustInitArgs {
    /// How many root keys must sign a root-level object.
    #[arg(long)]
    pub threshold: usize,
    /// A root public key file (repeatable); the id is the file stem.
    #[arg(long = "root", required = true)]
    pub roots: Vec<PathBuf>,
    /// Output file; stdout if absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub(super) fn trust_init(args: &TrustInitArgs) -> Result<(), CliError> {
    let roots = args
        .roots
        .iter()
        .map(|path| {
            let id = path.file_stem().map_or_else(|| "root".into(), |s| s.to_string_lossy().into_owned());
            Ok(RootKey { id, key: keyfile::load_public(path)? })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    let anchors = TrustAnchors::new(TrustAnchorsFile { threshold: args.threshold, roots })
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let text = keyfile::render_trust(&anchors);
    match &args.out {
        Some(path) => std::fs::write(path, text).map_err(|e| CliError::io(path, e))?,
        None => print!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_recipient_writes_a_0600_seed_whose_public_key_is_the_one_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("keys").join("clinic.x25519");
        let secret = keyfile::generate_recipient(&out).expect("generated");
        let printed = recipient_report(&out, &secret);
        let line = |label: &str| {
            printed.lines().find_map(|l| l.strip_prefix(label)).map(str::trim).expect(label).to_owned()
        };
        let loaded = keyfile::load_recipient(&out).expect("loads");
        assert_eq!(line("public key"), loaded.public().to_hex(), "{printed}");
        assert_eq!(line("kid"), loaded.public().kid(), "{printed}");
        let text = std::fs::read_to_string(&out).expect("read");
        assert!(text.len() == 65 && text.ends_with('\n'), "{text:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).expect("chmod");
            let err = keyfile::load_recipient(&out).expect_err("group-readable refused");
            assert!(err.to_string().contains("readable by group or others"), "{err}");
        }
        assert!(keyfile::generate_recipient(&out).is_err(), "no overwrite");
        let bad = dir.path().join("bad.x25519");
        std::fs::write(&bad, "not hex\n").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let err = keyfile::load_recipient(&bad).expect_err("not hex");
        assert!(err.to_string().contains("not 64 lowercase hex"), "{err}");
    }
}
