//! Recipient directories (`application/vnd.kairan.recipients+json`): the certified clinics of
//! a scope and their X25519 keys, signed by the relay certified for exactly that scope, so
//! that an origin can seal an advisory to named clinics ([`crate::sealed`]).
//!
//! A directory *version* is split in parts of at most [`MAX_PART_ENTRIES`] entries (a district
//! of 2,000 clinics has 16), each a [`SignedStatement`] verified on its own by
//! [`verify_directory`]: one signature by a key certified `relay`, whose certificate's subject
//! is the statement's `relay` and whose scope *equals* the statement's `scope`; certificates
//! chaining to the anchors at `now`; `issued_at` within the certificate, not in the future,
//! not revoked; `part` in `1..=parts ≤ MAX_PARTS`; entries with valid ids, scopes inside the
//! directory's, no id twice. The same statement shape carries group keys ([`crate::sealed::group`]).

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::advisory::check_id;
use crate::cert::{CertSet, Role, VerifiedCert};
use crate::delivery::{VerifyContext, first_passing, not_in_future, signer_candidates, single_signer};
use crate::envelope::{Envelope, RECIPIENTS_TYPE, decode_payload, encode_payload};
use crate::error::{Error, Result};
use crate::keys::SecretKey;
use crate::limits::{MAX_CERTS, MAX_PART_ENTRIES, MAX_PARTS};
use crate::scope::Scope;
use crate::sealed::RecipientKey;
use crate::time::Timestamp;
use crate::verified::{Verifiable, Verified};

/// Largest signed statement message (a statement within the payload limit and its chain).
pub const MAX_STATEMENT_MESSAGE_BYTES: usize = 96 * 1024;

/// A relay's signed statement as it travels: the envelope and the relay's certificate chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedStatement {
    /// DSSE envelope of the statement, signed by the relay key.
    pub statement: Envelope,
    /// The relay's certificate and those above it, up to a root-issued one.
    pub certs: Vec<Envelope>,
}

impl SignedStatement {
    /// Compact JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What every part-wise scope statement names, for [`verify_scoped`].
pub(crate) struct PartHeader<'a> {
    pub relay: &'a str,
    pub scope: &'a Scope,
    pub issued_at: Timestamp,
    pub part: u32,
    pub parts: u32,
}

/// Verifies a relay-signed statement about exactly the relay's scope (the checks listed in the
/// module docs, except the entries'). Returns the statement and the signer's certificate.
pub(crate) fn verify_scoped<T: DeserializeOwned>(
    bytes: &[u8],
    payload_type: &str,
    what: &str,
    ctx: VerifyContext<'_>,
    header: impl Fn(&T) -> PartHeader<'_>,
) -> Result<(T, VerifiedCert)> {
    if bytes.len() > MAX_STATEMENT_MESSAGE_BYTES {
        return Err(Error::Oversize {
            what: "signed statement",
            limit: MAX_STATEMENT_MESSAGE_BYTES,
            actual: bytes.len(),
        });
    }
    let message: SignedStatement = serde_json::from_slice(bytes)
        .map_err(|e| Error::MalformedPayload { payload_type: payload_type.into(), reason: e.to_string() })?;
    if message.certs.len() > MAX_CERTS {
        return Err(Error::TooManyCerts { count: message.certs.len(), limit: MAX_CERTS });
    }
    let certs = CertSet::verify(&message.certs, ctx.anchors, ctx.revocations, ctx.now)?;
    let signer = single_signer(&message.statement, payload_type, what)?;
    let candidates = signer_candidates(&certs, signer, Role::Relay, what)?;
    message.statement.verify_by(payload_type, what, &candidates[0].cert.key)?;
    let statement: T = decode_payload(payload_type, &message.statement.payload)?;
    let head = header(&statement);
    let malformed = |reason: String| Error::MalformedPayload { payload_type: payload_type.into(), reason };
    check_id("relay", head.relay).map_err(malformed)?;
    if head.parts == 0 || head.parts > MAX_PARTS || head.part == 0 || head.part > head.parts {
        return Err(malformed(format!("part {} of {}; parts are 1..={MAX_PARTS}", head.part, head.parts)));
    }
    let signed_by = first_passing(&candidates, |cert| {
        if cert.cert.subject != head.relay {
            return Err(Error::UnknownSigner {
                what: format!("{what} of relay {} signed by the key of {}", head.relay, cert.cert.subject),
                keyid: signer.to_owned(),
            });
        }
        if cert.cert.scope != *head.scope {
            return Err(Error::ScopeViolation {
                what: format!("{what} for a scope other than its relay's own"),
                scope: head.scope.to_string(),
                allowed: cert.cert.scope.to_string(),
            });
        }
        cert.cert.check_validity(head.issued_at)?;
        not_in_future(&format!("{what} issued_at"), head.issued_at, ctx.now)?;
        ctx.revocations.check(cert, head.issued_at, what)
    })?
    .clone();
    Ok((statement, signed_by))
}

/// One certified clinic of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryEntry {
    /// The clinic's id (its certificate subject).
    pub id: String,
    /// The clinic's scope (its certificate's; inside the directory's).
    pub scope: Scope,
    /// The clinic's X25519 public key.
    pub key: RecipientKey,
    /// The serial of the clinic's certificate, issued by the directory's relay.
    pub cert: String,
}

/// One part of one version of a scope's recipient directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientDirectory {
    /// The signing relay's id.
    pub relay: String,
    /// The scope whose clinics are listed (the relay's certified scope).
    pub scope: Scope,
    /// Directory version (+1 at each membership change; all parts of a version share it).
    pub version: u64,
    /// When the relay issued this version.
    pub issued_at: Timestamp,
    /// This part's number, from 1.
    pub part: u32,
    /// How many parts this version has.
    pub parts: u32,
    /// The clinics of this part, at most [`MAX_PART_ENTRIES`].
    pub recipients: Vec<DirectoryEntry>,
}

impl Verifiable for RecipientDirectory {
    type Facts = VerifiedCert;
}

impl RecipientDirectory {
    /// Splits `entries` into the parts of one directory version (at least one part).
    pub fn parts(
        relay: &str,
        scope: &Scope,
        version: u64,
        issued_at: Timestamp,
        entries: &[DirectoryEntry],
    ) -> Vec<Self> {
        let chunks: Vec<&[DirectoryEntry]> =
            if entries.is_empty() { vec![&[]] } else { entries.chunks(MAX_PART_ENTRIES).collect() };
        let parts = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        (1..)
            .zip(chunks)
            .map(|(part, chunk)| Self {
                relay: relay.to_owned(),
                scope: scope.clone(),
                version,
                issued_at,
                part,
                parts,
                recipients: chunk.to_vec(),
            })
            .collect()
    }

    /// Signs this part with the relay key, attaching the relay's certificate chain.
    pub fn sign(&self, relay_key: &SecretKey, chain: &[Envelope]) -> SignedStatement {
        SignedStatement {
            statement: Envelope::sign(RECIPIENTS_TYPE, encode_payload(self), &[relay_key]),
            certs: chain.to_vec(),
        }
    }
}

/// Parses and verifies one directory part (see the module docs for the checks).
pub fn verify_directory(bytes: &[u8], ctx: VerifyContext<'_>) -> Result<Verified<RecipientDirectory>> {
    let (directory, signer) =
        verify_scoped(bytes, RECIPIENTS_TYPE, "recipient directory", ctx, |d: &RecipientDirectory| {
            PartHeader {
                relay: &d.relay,
                scope: &d.scope,
                issued_at: d.issued_at,
                part: d.part,
                parts: d.parts,
            }
        })?;
    let malformed = |reason: String| Error::MalformedPayload { payload_type: RECIPIENTS_TYPE.into(), reason };
    if directory.recipients.len() > MAX_PART_ENTRIES {
        return Err(Error::Oversize {
            what: "directory part",
            limit: MAX_PART_ENTRIES,
            actual: directory.recipients.len(),
        });
    }
    let mut seen = BTreeSet::new();
    for entry in &directory.recipients {
        check_id("recipient id", &entry.id).map_err(malformed)?;
        check_id("certificate serial", &entry.cert).map_err(malformed)?;
        if !directory.scope.contains(&entry.scope) {
            return Err(Error::ScopeViolation {
                what: format!("recipient {} outside its directory", entry.id),
                scope: entry.scope.to_string(),
                allowed: directory.scope.to_string(),
            });
        }
        if !seen.insert(entry.id.as_str()) {
            return Err(malformed(format!("recipient {} listed twice", entry.id)));
        }
    }
    Ok(Verified::new(directory, signer))
}

impl Verified<RecipientDirectory> {
    /// The key of clinic `id`, if this part lists it.
    pub fn key_of(&self, id: &str) -> Option<&RecipientKey> {
        self.recipients.iter().find(|entry| entry.id == id).map(|entry| &entry.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::sealed::{directory, recipient};
    use crate::fixtures::{FIXTURE_NOW, Hierarchy};
    use crate::trust::RevocationSet;

    fn entry(index: usize) -> DirectoryEntry {
        DirectoryEntry {
            id: format!("c{index}"),
            scope: Scope::parse("jp/13/chuo").expect("scope"),
            key: recipient(&format!("c{index}")).public().clone(),
            cert: format!("s{index}"),
        }
    }

    #[test]
    fn entries_are_split_into_numbered_parts() {
        let scope = Scope::parse("jp/13/chuo").expect("scope");
        let entries: Vec<DirectoryEntry> = (0..300).map(entry).collect();
        let parts = RecipientDirectory::parts("jp-13-chuo", &scope, 2, FIXTURE_NOW, &entries);
        let shape: Vec<(u32, u32, usize)> =
            parts.iter().map(|p| (p.part, p.parts, p.recipients.len())).collect();
        assert_eq!(shape, [(1, 3, 128), (2, 3, 128), (3, 3, 44)]);
        let empty = RecipientDirectory::parts("jp-13-chuo", &scope, 2, FIXTURE_NOW, &[]);
        assert_eq!((empty.len(), empty[0].parts), (1, 1));
    }

    #[test]
    fn malformed_directories_are_refused() {
        let tree = Hierarchy::standard();
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        let check = |directory: &RecipientDirectory| {
            let bytes = directory.sign(&tree.relays[2].key, &tree.relay_chain(2)).to_json();
            verify_directory(&bytes, ctx).map(|_| ()).map_err(|e| e.code())
        };
        assert_eq!(check(&directory()), Ok(()));
        let mut twice = directory();
        twice.recipients.push(twice.recipients[0].clone());
        assert_eq!(check(&twice), Err("malformed_payload"));
        let mut no_parts = directory();
        no_parts.parts = 0;
        assert_eq!(check(&no_parts), Err("malformed_payload"));
        let mut impostor = directory();
        impostor.relay = "jp-13-minato".into();
        assert_eq!(check(&impostor), Err("unknown_signer"));
        let mut bad_key = serde_json::to_value(directory()).expect("json");
        bad_key["recipients"][0]["key"] = "00".repeat(32).into();
        let statement =
            Envelope::sign(RECIPIENTS_TYPE, bad_key.to_string().into_bytes(), &[&tree.relays[2].key]);
        let bytes = SignedStatement { statement, certs: tree.relay_chain(2) }.to_json();
        assert_eq!(verify_directory(&bytes, ctx).map(|_| ()).map_err(|e| e.code()), Err("malformed_payload"));
        let huge = vec![b' '; MAX_STATEMENT_MESSAGE_BYTES + 1];
        assert_eq!(verify_directory(&huge, ctx).map(|_| ()).map_err(|e| e.code()), Err("oversize_input"));
    }
}
