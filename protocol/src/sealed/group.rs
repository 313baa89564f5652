//! Group keys (`application/vnd.kairan.group-key+json`): how every clinic of a scope comes to
//! hold the scope's current epoch key, so that an origin seals an AMBER+STRICT advisory for
//! the whole district with one 48-byte wrap instead of one per clinic.
//!
//! The relay certified for exactly the scope (the district) makes a fresh random 32-byte key
//! for each epoch — at every membership change, joins included, so a clinic that joins later
//! cannot read earlier epochs and one that left cannot read later ones — wraps it with HPKE
//! (the suite of [`super::crypto`]) to each clinic of its directory and signs the wraps in
//! parts of at most [`MAX_PART_ENTRIES`] ([`distribute_group_key`]); it keeps no copy. The
//! HPKE `info` of a member's wrap is the compact JSON
//! `["kairan-group-key-v1", relay, scope, epoch, clinic id]`, `aad` empty, plaintext the key.
//! A clinic verifies its part ([`verify_group_key`], the checks of
//! [`crate::directory::verify_directory`]) and unwraps its key ([`open_group_key`]).

use std::collections::BTreeSet;

use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use super::keys::{GroupKey, Kem, RecipientKey, RecipientSecret};
use super::{ENC_BYTES, WRAPPED_KEY_BYTES, is_kid};
use crate::advisory::check_id;
use crate::cert::VerifiedCert;
use crate::delivery::VerifyContext;
use crate::directory::{PartHeader, SignedStatement, verify_scoped};
use crate::envelope::{Envelope, GROUP_KEY_TYPE, base64_bytes, encode_payload};
use crate::error::{Error, Result};
use crate::keys::SecretKey;
use crate::limits::{MAX_PART_ENTRIES, MAX_PARTS};
use crate::scope::Scope;
use crate::time::Timestamp;
use crate::verified::{Verifiable, Verified};

/// One clinic's wrap of the epoch key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    /// The clinic's id.
    pub id: String,
    /// [`RecipientKey::kid`] of the key the wrap is for.
    pub kid: String,
    /// HPKE encapsulated key, base64 (32 bytes).
    #[serde(with = "base64_bytes")]
    pub enc: Vec<u8>,
    /// HPKE ciphertext of the 32-byte epoch key, base64 (48 bytes).
    #[serde(with = "base64_bytes")]
    pub key: Vec<u8>,
}

/// One part of a group-key epoch, as signed by the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupKeyStatement {
    /// The signing relay's id.
    pub relay: String,
    /// The group's scope (the relay's certified scope).
    pub scope: Scope,
    /// The epoch (from 1, +1 at each membership change).
    pub epoch: u64,
    /// When the relay made this epoch.
    pub issued_at: Timestamp,
    /// This part's number, from 1.
    pub part: u32,
    /// How many parts this epoch has.
    pub parts: u32,
    /// The wraps of this part, at most [`MAX_PART_ENTRIES`].
    pub members: Vec<GroupMember>,
}

impl Verifiable for GroupKeyStatement {
    type Facts = VerifiedCert;
}

/// The HPKE `info` of the wrap for `clinic`.
pub fn member_info(relay: &str, scope: &Scope, epoch: u64, clinic: &str) -> Vec<u8> {
    json!(["kairan-group-key-v1", relay, scope.to_string(), epoch, clinic]).to_string().into_bytes()
}

impl GroupKeyStatement {
    /// Signs this part with the relay key, attaching the relay's certificate chain.
    pub fn sign(&self, relay_key: &SecretKey, chain: &[Envelope]) -> SignedStatement {
        SignedStatement {
            statement: Envelope::sign(GROUP_KEY_TYPE, encode_payload(self), &[relay_key]),
            certs: chain.to_vec(),
        }
    }
}

/// Wraps `key` to each of `members` (clinic id and directory key) and splits the wraps into
/// the parts of its epoch, ready to sign. Refuses more than `MAX_PARTS × MAX_PART_ENTRIES`
/// members before any cryptography.
pub fn distribute_group_key(
    relay: &str,
    key: &GroupKey,
    members: &[(&str, &RecipientKey)],
    issued_at: Timestamp,
    rng: &mut impl CryptoRng,
) -> Result<Vec<GroupKeyStatement>> {
    let limit = MAX_PART_ENTRIES * MAX_PARTS as usize;
    if members.len() > limit || members.is_empty() {
        return Err(Error::Oversize { what: "group members", limit, actual: members.len() });
    }
    let mut wraps = Vec::with_capacity(members.len());
    for (id, public) in members {
        let info = member_info(relay, key.scope(), key.epoch(), id);
        let (enc, wrapped) = hpke::single_shot_seal::<
            hpke::aead::ChaCha20Poly1305,
            hpke::kdf::HkdfSha256,
            Kem,
            _,
        >(&OpModeS::Base, &public.hpke()?, &info, key.secret(), b"", rng)
        .map_err(|e| Error::WeakKey(format!("X25519 key {} of {id}: {e}", public.kid())))?;
        wraps.push(GroupMember {
            id: (*id).to_owned(),
            kid: public.kid().to_owned(),
            enc: enc.to_bytes().to_vec(),
            key: wrapped,
        });
    }
    let chunks: Vec<&[GroupMember]> = wraps.chunks(MAX_PART_ENTRIES).collect();
    let parts = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    Ok((1..)
        .zip(chunks)
        .map(|(part, chunk)| GroupKeyStatement {
            relay: relay.to_owned(),
            scope: key.scope().clone(),
            epoch: key.epoch(),
            issued_at,
            part,
            parts,
            members: chunk.to_vec(),
        })
        .collect())
}

/// Parses and verifies one group-key part: the checks of
/// [`crate::directory::verify_directory`], then `epoch ≥ 1`, at most [`MAX_PART_ENTRIES`]
/// members, each with a valid id, a key id, 32-byte `enc` and 48-byte `key`, no id twice.
pub fn verify_group_key(bytes: &[u8], ctx: VerifyContext<'_>) -> Result<Verified<GroupKeyStatement>> {
    let (statement, signer) =
        verify_scoped(bytes, GROUP_KEY_TYPE, "group key", ctx, |g: &GroupKeyStatement| PartHeader {
            relay: &g.relay,
            scope: &g.scope,
            issued_at: g.issued_at,
            part: g.part,
            parts: g.parts,
        })?;
    let malformed = |reason: String| Error::MalformedPayload { payload_type: GROUP_KEY_TYPE.into(), reason };
    if statement.epoch == 0 {
        return Err(malformed("epochs start at 1".into()));
    }
    if statement.members.len() > MAX_PART_ENTRIES {
        return Err(Error::Oversize {
            what: "group key part",
            limit: MAX_PART_ENTRIES,
            actual: statement.members.len(),
        });
    }
    let mut seen = BTreeSet::new();
    for member in &statement.members {
        check_id("member id", &member.id).map_err(malformed)?;
        let shape_ok =
            is_kid(&member.kid) && member.enc.len() == ENC_BYTES && member.key.len() == WRAPPED_KEY_BYTES;
        if !shape_ok {
            return Err(malformed(format!(
                "wrap of {} is not a key id, 32-byte enc, 48-byte key",
                member.id
            )));
        }
        if !seen.insert(member.id.as_str()) {
            return Err(malformed(format!("member {} listed twice", member.id)));
        }
    }
    Ok(Verified::new(statement, signer))
}

/// Unwraps the epoch key of a verified group-key part as clinic `clinic`.
///
/// Refusals: `not_a_recipient` (this part has no wrap for `clinic`), `wrong_recipient_key`,
/// `sealed_corrupt` (the wrap does not authenticate).
pub fn open_group_key(
    statement: &Verified<GroupKeyStatement>,
    clinic: &str,
    secret: &RecipientSecret,
) -> Result<GroupKey> {
    let member = statement.members.iter().find(|m| m.id == clinic).ok_or_else(|| Error::NotARecipient {
        recipient: clinic.to_owned(),
        advisory: format!("group key {} epoch {} part {}", statement.scope, statement.epoch, statement.part),
    })?;
    if member.kid != secret.public().kid() {
        return Err(Error::WrongRecipientKey {
            recipient: clinic.to_owned(),
            sealed_to: member.kid.clone(),
            held: secret.public().kid().to_owned(),
        });
    }
    let corrupt = || Error::SealedCorrupt(format!("group key wrap of {clinic} epoch {}", statement.epoch));
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&member.enc).map_err(|_| corrupt())?;
    let info = member_info(&statement.relay, &statement.scope, statement.epoch, clinic);
    let key = hpke::single_shot_open::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, Kem>(
        &OpModeR::Base,
        secret.hpke(),
        &enc,
        &info,
        &member.key,
        b"",
    )
    .map_err(|_| corrupt())?;
    let key = Zeroizing::new(key);
    let key: [u8; 32] = key.as_slice().try_into().map_err(|_| corrupt())?;
    Ok(GroupKey::from_parts(statement.scope.clone(), statement.epoch, Zeroizing::new(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::sealed::{group_key, recipient, rng};
    use crate::fixtures::{FIXTURE_NOW, Hierarchy};
    use crate::trust::RevocationSet;

    #[test]
    fn members_are_split_into_parts_of_at_most_128() {
        let clinics: Vec<(String, RecipientSecret)> =
            (0..129).map(|i| (format!("c{i}"), RecipientSecret::from_seed(&[i as u8 + 1; 32]))).collect();
        let members: Vec<(&str, &RecipientKey)> =
            clinics.iter().map(|(id, s)| (id.as_str(), s.public())).collect();
        let parts = distribute_group_key("jp-13-chuo", &group_key(3), &members, FIXTURE_NOW, &mut rng("p"))
            .expect("wraps");
        let shape: Vec<(u32, u32, usize)> =
            parts.iter().map(|p| (p.part, p.parts, p.members.len())).collect();
        assert_eq!(shape, [(1, 2, 128), (2, 2, 1)]);
        assert!(parts.iter().all(|p| p.epoch == 3));
        let none = distribute_group_key("jp-13-chuo", &group_key(3), &[], FIXTURE_NOW, &mut rng("p"));
        assert_eq!(none.map_err(|e| e.code()), Err("oversize_input"));
    }

    #[test]
    fn malformed_parts_are_refused() {
        let tree = Hierarchy::standard();
        let revocations = RevocationSet::default();
        let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
        let one = recipient("chuo-clinic-1");
        let parts = distribute_group_key(
            "jp-13-chuo",
            &group_key(1),
            &[("chuo-clinic-1", one.public())],
            FIXTURE_NOW,
            &mut rng("p"),
        )
        .expect("wraps");
        let check = |statement: &GroupKeyStatement| {
            let bytes = statement.sign(&tree.relays[2].key, &tree.relay_chain(2)).to_json();
            verify_group_key(&bytes, ctx).map(|_| ()).map_err(|e| e.code())
        };
        assert_eq!(check(&parts[0]), Ok(()));
        let mut twice = parts[0].clone();
        twice.members.push(twice.members[0].clone());
        assert_eq!(check(&twice), Err("malformed_payload"));
        let mut zero = parts[0].clone();
        zero.epoch = 0;
        assert_eq!(check(&zero), Err("malformed_payload"));
        let mut past_the_end = parts[0].clone();
        past_the_end.part = 2;
        assert_eq!(check(&past_the_end), Err("malformed_payload"));
        let mut future = parts[0].clone();
        future.issued_at = tree.later().plus_secs(3600);
        assert_eq!(check(&future), Err("from_the_future"));
    }
}
