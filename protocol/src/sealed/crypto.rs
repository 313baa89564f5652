//! Sealing and opening: the content AEAD, the per-recipient wraps and their binding strings.
//!
//! Every binding is the compact JSON of an array (no ambiguity, easy to rebuild elsewhere):
//! - content AAD: `["kairan-sealed-v1/content", origin, seq, id, scope, tlp]`, with `tlp`
//!   the wire label (`"RED"`); nonce 12 zero bytes (the content key is used once);
//! - a clinic slot's HPKE `info`: `["kairan-sealed-v1/clinic", origin, seq, id, scope,
//!   clinic id]`, HPKE `aad` empty, plaintext the 32-byte content key;
//! - a group slot's AAD: `["kairan-sealed-v1/group", origin, seq, id, scope, group scope,
//!   epoch]`, XChaCha20-Poly1305 under the group key, plaintext the content key.
//!
//! So a wrapped key or a ciphertext moved to another advisory (another origin, sequence
//! number, id or scope), another clinic or another group epoch does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use serde_json::json;
use zeroize::Zeroizing;

use super::keys::{GroupKey, Kem, RecipientKey, RecipientSecret};
use super::{Confidential, GROUP_NONCE_BYTES, SUITE, Sealed, Slot};
use crate::advisory::Advisory;
use crate::delivery::Delivery;
use crate::error::{Error, Result};
use crate::limits::MAX_SEALED_RECIPIENTS;
use crate::verified::Verified;

type HpkeAead = hpke::aead::ChaCha20Poly1305;
type HpkeKdf = hpke::kdf::HkdfSha256;

/// One addressee of [`seal`].
#[derive(Debug, Clone, Copy)]
pub enum To<'a> {
    /// A clinic, by id, with its key from the verified recipient directory.
    Clinic(&'a str, &'a RecipientKey),
    /// Every clinic holding this group epoch key.
    Group(&'a GroupKey),
}

fn tlp_label(advisory: &Advisory) -> String {
    serde_json::to_value(advisory.tlp).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The content AAD of `advisory`.
pub fn content_aad(advisory: &Advisory) -> Vec<u8> {
    let binding = json!([
        "kairan-sealed-v1/content",
        advisory.origin,
        advisory.seq,
        advisory.id,
        advisory.scope.to_string(),
        tlp_label(advisory)
    ]);
    binding.to_string().into_bytes()
}

/// The HPKE `info` of the slot of `clinic` in `advisory`.
pub fn clinic_info(advisory: &Advisory, clinic: &str) -> Vec<u8> {
    let binding = json!([
        "kairan-sealed-v1/clinic",
        advisory.origin,
        advisory.seq,
        advisory.id,
        advisory.scope.to_string(),
        clinic
    ]);
    binding.to_string().into_bytes()
}

/// The AAD of the slot of group `key` in `advisory`.
pub fn group_aad(advisory: &Advisory, scope: &str, epoch: u64) -> Vec<u8> {
    let binding = json!([
        "kairan-sealed-v1/group",
        advisory.origin,
        advisory.seq,
        advisory.id,
        advisory.scope.to_string(),
        scope,
        epoch
    ]);
    binding.to_string().into_bytes()
}

const CONTENT_NONCE: [u8; 12] = [0; 12];

/// Seals a cleartext AMBER+STRICT or RED advisory to `to`: returns it with its confidential
/// fields emptied and its `sealed` object set, ready for the origin to sign. The recipient
/// count is checked before any cryptography; the result passes [`Advisory::validate`].
pub fn seal(advisory: &Advisory, to: &[To<'_>], rng: &mut impl CryptoRng) -> Result<Advisory> {
    if advisory.sealed.is_some() {
        return Err(Error::MalformedSealed(format!("advisory {} is already sealed", advisory.id)));
    }
    if to.len() > MAX_SEALED_RECIPIENTS {
        return Err(Error::Oversize {
            what: "sealed recipients",
            limit: MAX_SEALED_RECIPIENTS,
            actual: to.len(),
        });
    }
    let content = Confidential::of(advisory);
    content.validate(&advisory.lang)?;
    let plaintext = Zeroizing::new(serde_json::to_vec(&content).unwrap_or_default());
    let mut cek = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(cek.as_mut());
    let ciphertext = ChaCha20Poly1305::new(cek.as_ref().into())
        .encrypt(&CONTENT_NONCE.into(), Payload { msg: &plaintext, aad: &content_aad(advisory) })
        .map_err(|_| Error::MalformedSealed("content too long to encrypt".into()))?;
    let mut recipients = Vec::with_capacity(to.len());
    for addressee in to {
        recipients.push(match addressee {
            To::Clinic(id, public) => {
                let (enc, key) = hpke::single_shot_seal::<HpkeAead, HpkeKdf, Kem, _>(
                    &OpModeS::Base,
                    &public.hpke()?,
                    &clinic_info(advisory, id),
                    cek.as_ref(),
                    b"",
                    rng,
                )
                .map_err(|e| Error::WeakKey(format!("X25519 key {} of {id}: {e}", public.kid())))?;
                Slot::Clinic {
                    id: (*id).to_owned(),
                    kid: public.kid().to_owned(),
                    enc: enc.to_bytes().to_vec(),
                    key,
                }
            }
            To::Group(group) => {
                let mut nonce = [0u8; GROUP_NONCE_BYTES];
                rng.fill_bytes(&mut nonce);
                let scope = group.scope().to_string();
                let aad = group_aad(advisory, &scope, group.epoch());
                let key = XChaCha20Poly1305::new(group.secret().into())
                    .encrypt(&nonce.into(), Payload { msg: cek.as_ref(), aad: &aad })
                    .map_err(|_| Error::MalformedSealed("content key wrap failed".into()))?;
                Slot::Group { scope: group.scope().clone(), epoch: group.epoch(), nonce: nonce.to_vec(), key }
            }
        });
    }
    let mut sealed = advisory.clone();
    Confidential::default().write_into(&mut sealed);
    sealed.sealed = Some(Sealed { suite: SUITE.to_owned(), recipients, ciphertext });
    sealed.validate()?;
    Ok(sealed)
}

fn sealed_of(advisory: &Advisory) -> Result<&Sealed> {
    advisory
        .sealed
        .as_ref()
        .ok_or_else(|| Error::MalformedSealed(format!("advisory {} is not sealed", advisory.id)))
}

/// Opens a verified sealed advisory as clinic `clinic` with its secret key.
///
/// Refusals: `not_a_recipient` (no slot names `clinic`), `wrong_recipient_key` (the slot was
/// sealed to another key), `sealed_corrupt` (the wrapped key or the ciphertext does not
/// authenticate: truncated or altered), `malformed_sealed` / `invalid_advisory` (the
/// decrypted content is not a valid [`Confidential`]).
pub fn open_sealed(
    delivery: &Verified<Delivery>,
    clinic: &str,
    secret: &RecipientSecret,
) -> Result<Confidential> {
    let advisory = delivery.advisory();
    let sealed = sealed_of(advisory)?;
    let (kid, enc, key) = sealed
        .recipients
        .iter()
        .find_map(|slot| match slot {
            Slot::Clinic { id, kid, enc, key } if id == clinic => Some((kid, enc, key)),
            _ => None,
        })
        .ok_or_else(|| Error::NotARecipient {
            recipient: clinic.to_owned(),
            advisory: advisory.id.clone(),
        })?;
    if kid != secret.public().kid() {
        return Err(Error::WrongRecipientKey {
            recipient: clinic.to_owned(),
            sealed_to: kid.clone(),
            held: secret.public().kid().to_owned(),
        });
    }
    let corrupt = || Error::SealedCorrupt(format!("the content key wrapped for {clinic}"));
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| corrupt())?;
    let cek = hpke::single_shot_open::<HpkeAead, HpkeKdf, Kem>(
        &OpModeR::Base,
        secret.hpke(),
        &enc,
        &clinic_info(advisory, clinic),
        key,
        b"",
    )
    .map_err(|_| corrupt())?;
    decrypt_content(advisory, sealed, &Zeroizing::new(cek))
}

/// Opens a verified sealed advisory with the epoch key of a group it was sealed to.
///
/// Refusals: `not_a_recipient` (no slot for the key's scope), `wrong_group_epoch` (sealed
/// under another epoch), `sealed_corrupt`, `malformed_sealed` / `invalid_advisory`.
pub fn open_sealed_group(delivery: &Verified<Delivery>, group: &GroupKey) -> Result<Confidential> {
    let advisory = delivery.advisory();
    let sealed = sealed_of(advisory)?;
    let (epoch, nonce, key) = sealed
        .recipients
        .iter()
        .find_map(|slot| match slot {
            Slot::Group { scope, epoch, nonce, key } if scope == group.scope() => Some((*epoch, nonce, key)),
            _ => None,
        })
        .ok_or_else(|| Error::NotARecipient {
            recipient: format!("group {}", group.scope()),
            advisory: advisory.id.clone(),
        })?;
    if epoch != group.epoch() {
        return Err(Error::WrongGroupEpoch {
            scope: group.scope().to_string(),
            sealed: epoch,
            held: group.epoch(),
        });
    }
    let aad = group_aad(advisory, &group.scope().to_string(), epoch);
    let nonce: [u8; GROUP_NONCE_BYTES] = nonce.as_slice().try_into().map_err(|_| corrupt_group(group))?;
    let cek = XChaCha20Poly1305::new(group.secret().into())
        .decrypt(&nonce.into(), Payload { msg: key, aad: &aad })
        .map_err(|_| corrupt_group(group))?;
    decrypt_content(advisory, sealed, &Zeroizing::new(cek))
}

fn corrupt_group(group: &GroupKey) -> Error {
    Error::SealedCorrupt(format!(
        "the content key wrapped for group {} epoch {}",
        group.scope(),
        group.epoch()
    ))
}

fn decrypt_content(advisory: &Advisory, sealed: &Sealed, cek: &[u8]) -> Result<Confidential> {
    let cek: &[u8; 32] =
        cek.try_into().map_err(|_| Error::SealedCorrupt(format!("content key of {} bytes", cek.len())))?;
    let plaintext = ChaCha20Poly1305::new(cek.into())
        .decrypt(&CONTENT_NONCE.into(), Payload { msg: &sealed.ciphertext, aad: &content_aad(advisory) })
        .map_err(|_| {
            Error::SealedCorrupt(format!(
                "the content ciphertext ({} bytes) does not authenticate: truncated or altered",
                sealed.ciphertext.len()
            ))
        })?;
    let plaintext = Zeroizing::new(plaintext);
    let content: Confidential = serde_json::from_slice(&plaintext).map_err(|e| {
        Error::MalformedSealed(format!("decrypted content is not the confidential JSON: {e}"))
    })?;
    content.validate(&advisory.lang)?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::sealed::{confidential_advisory, recipient, rng, sealed_red};
    use crate::scope::Scope;

    #[test]
    fn binding_strings_are_the_documented_json_arrays() {
        let advisory = confidential_advisory(crate::advisory::Tlp::Red, 1);
        assert_eq!(
            String::from_utf8(content_aad(&advisory)).expect("utf-8"),
            r#"["kairan-sealed-v1/content","mhlw",1,"mhlw-test-1","jp/13/chuo","RED"]"#
        );
        assert_eq!(
            String::from_utf8(clinic_info(&advisory, "chuo-clinic-1")).expect("utf-8"),
            r#"["kairan-sealed-v1/clinic","mhlw",1,"mhlw-test-1","jp/13/chuo","chuo-clinic-1"]"#
        );
        assert_eq!(
            String::from_utf8(group_aad(&advisory, "jp/13/chuo", 4)).expect("utf-8"),
            r#"["kairan-sealed-v1/group","mhlw",1,"mhlw-test-1","jp/13/chuo","jp/13/chuo",4]"#
        );
    }

    #[test]
    fn sealing_twice_and_too_many_recipients_are_refused_before_any_cryptography() {
        let one = recipient("chuo-clinic-1");
        let to = [To::Clinic("chuo-clinic-1", one.public())];
        let twice = seal(&sealed_red(), &to, &mut rng("x")).map_err(|e| e.code());
        assert_eq!(twice, Err("malformed_sealed"));
        let many = vec![To::Clinic("chuo-clinic-1", one.public()); MAX_SEALED_RECIPIENTS + 1];
        let advisory = confidential_advisory(crate::advisory::Tlp::Red, 1);
        assert_eq!(seal(&advisory, &many, &mut rng("x")).map_err(|e| e.code()), Err("oversize_input"));
    }

    #[test]
    fn sealing_refuses_invalid_content_and_keeps_the_metadata() {
        let one = recipient("chuo-clinic-1");
        let to = [To::Clinic("chuo-clinic-1", one.public())];
        let mut advisory = confidential_advisory(crate::advisory::Tlp::Red, 1);
        advisory.cves.push("CVE-1".into());
        assert_eq!(seal(&advisory, &to, &mut rng("x")).map_err(|e| e.code()), Err("invalid_advisory"));
        advisory.cves.pop();
        let sealed = seal(&advisory, &to, &mut rng("x")).expect("seals");
        assert_eq!((sealed.origin.as_str(), sealed.seq, sealed.id.as_str()), ("mhlw", 1, "mhlw-test-1"));
        assert_eq!(sealed.scope, Scope::parse("jp/13/chuo").expect("scope"));
        assert!(sealed.title.0.is_empty() && sealed.cves.is_empty() && sealed.source.is_none());
    }
}
