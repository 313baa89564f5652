//! Key, certificate and trust files on disk.
//!
//! - `ID.key`: the 32-byte Ed25519 seed as 64 lowercase hex characters and a newline, mode
//!   0600. Loading a key file that group or others can read is refused.
//! - `ID.pub`: the public key as 64 lowercase hex characters and a newline.
//! - `*.cert.json`: a certificate envelope (DSSE JSON).
//! - trust file: TOML `threshold = k` and `[[roots]] id = "…" key = "<hex>"`.
//! - recipient key file (a clinic's, for sealed advisories, `kairan keygen-recipient`): the
//!   32-byte X25519 seed (HPKE `DeriveKeyPair`, [`RecipientSecret::from_seed`]) as 64 lowercase
//!   hex characters and a newline, mode 0600, refused when group or others can read it. Its
//!   public key and kid are printed when it is made, for the district's recipient directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kairan_protocol::advisory::check_id;
use kairan_protocol::sealed::RecipientSecret;
use kairan_protocol::{Envelope, PublicKey, SecretKey, TrustAnchors, TrustAnchorsFile};

use crate::error::CliError;

/// Paths of a freshly written key pair.
#[derive(Debug, Clone)]
pub struct KeyPairPaths {
    /// The secret key file (mode 0600).
    pub secret: PathBuf,
    /// The public key file.
    pub public: PathBuf,
}

/// Generates a key pair named `name` in `dir` (created if missing). Refuses to overwrite.
pub fn generate(dir: &Path, name: &str) -> Result<(SecretKey, KeyPairPaths), CliError> {
    check_id("key name", name).map_err(CliError::Usage)?;
    let mut seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut seed);
    let secret = SecretKey::from_seed(&seed).map_err(|e| CliError::Failed(format!("generated key: {e}")))?;
    let paths = write_pair(dir, name, &secret)?;
    Ok((secret, paths))
}

/// Writes `secret` as `dir/name.key` (0600) and `dir/name.pub`. Refuses to overwrite.
pub fn write_pair(dir: &Path, name: &str, secret: &SecretKey) -> Result<KeyPairPaths, CliError> {
    fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    let secret_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(CliError::Usage(format!(
                "{} already exists; refusing to overwrite a key",
                path.display()
            )));
        }
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&secret_path).map_err(|e| CliError::io(&secret_path, e))?;
    file.write_all(format!("{}\n", secret.to_hex()).as_bytes()).map_err(|e| CliError::io(&secret_path, e))?;
    file.sync_all().map_err(|e| CliError::io(&secret_path, e))?;
    fs::write(&public_path, format!("{}\n", secret.public().to_hex()))
        .map_err(|e| CliError::io(&public_path, e))?;
    Ok(KeyPairPaths { secret: secret_path, public: public_path })
}

/// Writes a fresh recipient key file at `path` (mode 0600; refuses to overwrite) from the OS
/// RNG and returns the key (its public half is what the district's directory lists).
pub fn generate_recipient(path: &Path) -> Result<RecipientSecret, CliError> {
    if path.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists; refusing to overwrite a key",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    }
    // 32 bytes from the OS, then DeriveKeyPair: what `RecipientSecret::generate` does (this
    // crate's `rand` is 0.8, whose OsRng is not the protocol's rand_core 0.9 CryptoRng).
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut seed[..]);
    let secret = RecipientSecret::from_seed(&seed);
    let mut text = zeroize::Zeroizing::new(hex::encode(seed.as_slice()));
    text.push('\n');
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| CliError::io(path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| CliError::io(path, e))?;
    file.sync_all().map_err(|e| CliError::io(path, e))?;
    Ok(secret)
}

/// Loads a recipient key file, refusing one that group or others can read.
pub fn load_recipient(path: &Path) -> Result<RecipientSecret, CliError> {
    let text = zeroize::Zeroizing::new(
        crate::secrets::read_private(path, "recipient key").map_err(CliError::Usage)?,
    );
    let trimmed = text.trim_end_matches('\n');
    let seed: Option<[u8; 32]> = hex::decode(trimmed)
        .ok()
        .filter(|_| trimmed.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|bytes| bytes.try_into().ok());
    let seed = zeroize::Zeroizing::new(seed.ok_or_else(|| {
        CliError::Usage(format!(
            "recipient key {}: not 64 lowercase hex characters (an X25519 seed made by `kairan keygen-recipient`)",
            path.display()
        ))
    })?);
    Ok(RecipientSecret::from_seed(&seed))
}

/// Loads a secret key file, refusing one that group or others can read.
pub fn load_secret(path: &Path) -> Result<SecretKey, CliError> {
    let metadata = fs::metadata(path).map_err(|e| CliError::io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CliError::Usage(format!(
                "secret key {} is readable by group or others (mode {mode:04o}); run: chmod 600 {}",
                path.display(),
                path.display()
            )));
        }
    }
    let _ = metadata;
    let text = fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    SecretKey::from_hex(&text).map_err(|e| CliError::Usage(format!("secret key {}: {e}", path.display())))
}

/// Loads a public key file (64 hex characters).
pub fn load_public(path: &Path) -> Result<PublicKey, CliError> {
    let text = fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    PublicKey::from_hex(&text).map_err(|e| CliError::Usage(format!("public key {}: {e}", path.display())))
}

/// Loads an envelope file (a certificate, an advisory).
pub fn load_envelope(path: &Path) -> Result<Envelope, CliError> {
    let bytes = fs::read(path).map_err(|e| CliError::io(path, e))?;
    Envelope::from_json(&bytes).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// Parses trust-anchors TOML.
pub fn parse_trust(text: &str) -> Result<TrustAnchors, String> {
    let file: TrustAnchorsFile = toml::from_str(text).map_err(|e| e.to_string())?;
    TrustAnchors::new(file).map_err(|e| e.to_string())
}

/// Loads the trust-anchors file.
pub fn load_trust(path: &Path) -> Result<TrustAnchors, CliError> {
    let text = fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    parse_trust(&text).map_err(|e| CliError::Config(format!("trust file {}: {e}", path.display())))
}

/// Renders trust anchors as the TOML trust file.
pub fn render_trust(anchors: &TrustAnchors) -> String {
    let mut out = String::from(
        "# kairan trust anchors: root public keys and how many must sign a root-level object.\n",
    );
    out.push_str(&format!("threshold = {}\n", anchors.threshold()));
    for root in anchors.roots() {
        out.push_str(&format!("\n[[roots]]\nid = \"{}\"\nkey = \"{}\"\n", root.id, root.key.to_hex()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_world_readable_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (secret, paths) = generate(dir.path(), "origin-1").expect("keygen");
        let public_text = fs::read_to_string(&paths.public).expect("pub");
        assert_eq!(public_text.len(), 65);
        assert!(public_text.ends_with('\n'));
        assert_eq!(load_secret(&paths.secret).expect("loads").public(), secret.public());
        assert_eq!(load_public(&paths.public).expect("loads"), *secret.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&paths.secret, fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = load_secret(&paths.secret).expect_err("refused");
            assert!(err.to_string().contains("readable by group or others"), "{err}");
        }
        assert!(generate(dir.path(), "origin-1").is_err(), "no overwrite");
    }

    #[test]
    fn trust_file_round_trips() {
        let tree = kairan_protocol::fixtures::Hierarchy::standard();
        let text = render_trust(&tree.anchors);
        assert_eq!(parse_trust(&text).expect("parses"), tree.anchors);
    }
}
