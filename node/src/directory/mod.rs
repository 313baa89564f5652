//! Recipient directories on the running tree (`docs/protocol.md` §17, §21).
//!
//! - A district whose config names a recipients file ([`crate::recipients`]) signs its clinics'
//!   recipient keys as [`RecipientDirectory`] parts and publishes them retained on its own
//!   broker (`<node>/recipients/<part>`, read by its clinics) and on its parent's broker
//!   (`<parent>/directory/<scope>/<part>`).
//! - Every relay reads the parts its children put on its broker (`<node>/directory/#`),
//!   verifies each ([`verify_directory`]: signed by the relay certified for exactly that scope,
//!   a scope strictly inside this relay's, topic and payload agreeing), keeps the highest
//!   version per scope, and republishes what it accepted on its own parent's broker, so the
//!   national broker ends up holding every district's directory, where origins read it
//!   ([`read`]). A relay drops, and logs, anything else.
//!
//! The directory *version* is a durable counter ([`VersionFile`], in the data dir, written
//! with fsync): it grows by one whenever the recipients file's content changes, and a restart
//! re-signs the very same statement (same version, same `issued_at`, deterministic Ed25519),
//! so one version never names two different memberships.

pub mod read;
pub mod task;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kairan_protocol::directory::{RecipientDirectory, verify_directory};
use kairan_protocol::{Digest, Envelope, Scope, SecretKey, Timestamp, VerifyContext};

use crate::recipients::RecipientsFile;

/// File (in the node's data dir) holding the directory version.
pub const VERSION_FILE: &str = "directory-version.json";

/// The durable directory version: which recipients content it names, and when it was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFile {
    /// The version number (from 1).
    pub version: u64,
    /// `sha256:` digest of the recipients file's bytes this version lists.
    pub content: String,
    /// When this version was first issued (kept so a restart re-signs the same statement).
    pub issued_at: Timestamp,
}

impl VersionFile {
    /// The version for recipients file bytes `content`: the stored one when the content is the
    /// same, else the next one, written durably (temporary file, fsync, rename, fsync of the
    /// directory) before it is returned — before anything signed with it is published.
    pub fn for_content(data_dir: &Path, content: &[u8], now: Timestamp) -> Result<Self, String> {
        let path = data_dir.join(VERSION_FILE);
        let digest = Digest::of(content).to_string();
        let stored: Option<Self> = match std::fs::read(&path) {
            Ok(bytes) => {
                Some(serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        if let Some(stored) = stored.as_ref().filter(|stored| stored.content == digest) {
            return Ok(stored.clone());
        }
        let next = Self {
            version: stored.map_or(1, |stored| stored.version.saturating_add(1)),
            content: digest,
            issued_at: now,
        };
        let bytes = serde_json::to_vec(&next).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
        crate::secrets::write_private(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(next)
    }
}

/// What a relay signs its directory with.
#[derive(Debug)]
pub struct Signer {
    /// The relay's id.
    pub id: String,
    /// Its certified scope.
    pub scope: Scope,
    /// Its key.
    pub key: SecretKey,
    /// Its certificate, then those above it.
    pub chain: Vec<Envelope>,
}

/// The signed parts (JSON bytes, part 1 first) of the directory listing `recipients` at
/// `version`.
pub fn sign_parts(signer: &Signer, version: &VersionFile, recipients: &RecipientsFile) -> Vec<Vec<u8>> {
    let mut entries = recipients.recipients.clone();
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    RecipientDirectory::parts(&signer.id, &signer.scope, version.version, version.issued_at, &entries)
        .iter()
        .map(|part| part.sign(&signer.key, &signer.chain).to_json())
        .collect()
}

/// Reads the recipients file and returns its current version and signed parts.
pub fn current(signer: &Signer, recipients: &Path, data_dir: &Path, now: Timestamp) -> Result<Own, String> {
    let content = match std::fs::read(recipients) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("node.recipients {}: {e}", recipients.display())),
    };
    let text = String::from_utf8(content.clone()).map_err(|e| format!("node.recipients: {e}"))?;
    let file = RecipientsFile::parse(&text, &signer.scope)
        .map_err(|e| format!("node.recipients {}: {e}", recipients.display()))?;
    let version = VersionFile::for_content(data_dir, &content, now)?;
    Ok(Own { parts: sign_parts(signer, &version, &file), version, clinics: file.recipients.len() })
}

/// A district's own directory as last signed.
#[derive(Debug, Clone)]
pub struct Own {
    /// Its version.
    pub version: VersionFile,
    /// The signed parts, part 1 first.
    pub parts: Vec<Vec<u8>>,
    /// How many clinics it lists.
    pub clinics: usize,
}

/// Where a district's recipients file is and where its version is kept.
#[derive(Debug, Clone)]
pub struct OwnFiles {
    /// The recipients file.
    pub recipients: PathBuf,
    /// The node's data dir.
    pub data_dir: PathBuf,
}

/// The directories a relay accepted from below: the highest version of each scope, by part.
#[derive(Debug, Default)]
pub struct Book {
    scopes: BTreeMap<String, (u64, BTreeMap<u32, Vec<u8>>)>,
}

/// What became of a directory part received from a child.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Verified and the newest for its scope: republish it (scope, part).
    Accepted(Scope, u32),
    /// Verified but older than what is held: dropped.
    Stale,
}

impl Book {
    /// Verifies part bytes received on `topic_scope`/`topic_part` of relay `own_scope`'s
    /// broker and keeps it when it is the newest of its scope.
    pub fn receive(
        &mut self,
        own_scope: &Scope,
        topic_scope: &str,
        topic_part: &str,
        bytes: &[u8],
        ctx: VerifyContext<'_>,
    ) -> Result<Received, String> {
        let verified = verify_directory(bytes, ctx).map_err(|e| format!("{}: {e}", e.code()))?;
        let directory = &*verified;
        if directory.scope.to_string() != topic_scope || directory.part.to_string() != topic_part {
            return Err(format!(
                "part {} of {} published on the topic of part {topic_part} of {topic_scope}",
                directory.part, directory.scope
            ));
        }
        if !own_scope.contains(&directory.scope) || directory.scope == *own_scope {
            return Err(format!("scope {} is not inside this relay's scope {own_scope}", directory.scope));
        }
        let held = self.scopes.entry(directory.scope.to_string()).or_insert((0, BTreeMap::new()));
        if directory.version < held.0 {
            return Ok(Received::Stale);
        }
        if directory.version > held.0 {
            *held = (directory.version, BTreeMap::new());
        }
        held.1.insert(directory.part, bytes.to_vec());
        Ok(Received::Accepted(directory.scope.clone(), directory.part))
    }

    /// Every part held: (scope, part, bytes).
    pub fn parts(&self) -> impl Iterator<Item = (&str, u32, &[u8])> {
        self.scopes.iter().flat_map(|(scope, (_, parts))| {
            parts.iter().map(move |(part, bytes)| (scope.as_str(), *part, bytes.as_slice()))
        })
    }

    /// The part bytes held for `scope` and `part`.
    pub fn get(&self, scope: &str, part: u32) -> Option<&[u8]> {
        self.scopes.get(scope).and_then(|(_, parts)| parts.get(&part)).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures::Hierarchy;
    use kairan_protocol::fixtures::sealed::directory;
    use kairan_protocol::trust::RevocationSet;

    #[test]
    fn the_version_grows_with_the_content_only_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("time");
        let later = now.plus_secs(60);
        let first = VersionFile::for_content(dir.path(), b"a", now).expect("v1");
        assert_eq!((first.version, first.issued_at), (1, now));
        let same = VersionFile::for_content(dir.path(), b"a", later).expect("same");
        assert_eq!(same, first, "same content: same version, same issued_at");
        let second = VersionFile::for_content(dir.path(), b"b", later).expect("v2");
        assert_eq!((second.version, second.issued_at), (2, later));
        let back = VersionFile::for_content(dir.path(), b"a", later).expect("v3");
        assert_eq!(back.version, 3, "old content again is a new version");
    }

    #[test]
    fn the_book_keeps_the_newest_verified_part_of_scopes_below() {
        let tree = Hierarchy::standard();
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        let sign = |version: u64| {
            let mut part = directory();
            part.version = version;
            part.sign(&tree.relays[2].key, &tree.relay_chain(2)).to_json()
        };
        let part = directory();
        let scope = part.scope.to_string();
        let prefecture = tree.relays[1].scope.clone();
        let mut book = Book::default();
        let got = book.receive(&prefecture, &scope, "1", &sign(2), ctx).expect("accepted");
        assert_eq!(got, Received::Accepted(part.scope.clone(), 1));
        assert_eq!(book.receive(&prefecture, &scope, "1", &sign(1), ctx), Ok(Received::Stale));
        assert_eq!(book.get(&scope, 1), Some(sign(2).as_slice()));
        let wrong_topic = book.receive(&prefecture, "jp/13/other", "1", &sign(3), ctx).expect_err("topic");
        assert!(wrong_topic.contains("topic"), "{wrong_topic}");
        let own = book.receive(&part.scope, &scope, "1", &sign(3), ctx).expect_err("own scope");
        assert!(own.contains("not inside"), "{own}");
        let forged = book.receive(&prefecture, &scope, "1", b"{}", ctx).expect_err("forged");
        assert!(forged.starts_with("malformed_payload"), "{forged}");
    }
}
