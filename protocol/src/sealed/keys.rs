//! Recipient encryption keys (X25519, for HPKE) and group epoch keys.
//!
//! A clinic holds a [`RecipientSecret`]: an X25519 private key derived from a 32-byte seed
//! with HPKE's `DeriveKeyPair` (RFC 9180 §7.1.3), so the node stores only the seed. Its
//! public half, a [`RecipientKey`], is published in the district's signed recipient directory
//! ([`crate::directory`]). A [`GroupKey`] is the 32-byte secret of one epoch of a scope's
//! group, distributed to the clinics by the district ([`super::group`]).
//!
//! Secrets zeroize on drop (the HPKE private key is an `x25519-dalek` `StaticSecret`, the group
//! key a `Zeroizing` array) and their `Debug` prints only the public key id or the epoch.

use std::fmt;

use hpke::{Deserializable, Kem as _, Serializable};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::scope::Scope;

/// The HPKE KEM of kairan: DHKEM(X25519, HKDF-SHA256).
pub(crate) type Kem = hpke::kem::X25519HkdfSha256;

/// Length of a recipient key id: the first 8 bytes of SHA-256 of the raw public key, in hex.
pub const RECIPIENT_KID_CHARS: usize = 16;

/// A recipient's X25519 public key (32 bytes, lowercase hex on the wire).
#[derive(Clone, PartialEq, Eq)]
pub struct RecipientKey {
    bytes: [u8; 32],
    kid: String,
}

impl RecipientKey {
    /// A public key from its 32 raw bytes; the all-zero key is refused.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        if bytes.iter().all(|b| *b == 0) {
            return Err(Error::WeakKey("the all-zero X25519 key".into()));
        }
        let kid = hex::encode(&Sha256::digest(bytes)[..RECIPIENT_KID_CHARS / 2]);
        Ok(Self { bytes: *bytes, kid })
    }

    /// A public key from 64 lowercase hex characters.
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes: [u8; 32] = hex::decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .filter(|_| text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or_else(|| Error::MalformedKey(format!("X25519 key {text:?} is not 64 lowercase hex")))?;
        Self::from_bytes(&bytes)
    }

    /// Lowercase hex of the raw key.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The key id: 16 hex characters of SHA-256 of the raw key. A hint, never trusted.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn hpke(&self) -> Result<<Kem as hpke::Kem>::PublicKey> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.bytes)
            .map_err(|e| Error::MalformedKey(format!("X25519 key {}: {e}", self.kid)))
    }
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientKey({})", self.to_hex())
    }
}

impl Serialize for RecipientKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for RecipientKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// A recipient's X25519 private key. Zeroized on drop; `Debug` shows the public key id only.
#[derive(Clone)]
pub struct RecipientSecret {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: RecipientKey,
}

impl RecipientSecret {
    /// The key pair HPKE's `DeriveKeyPair` gives for `seed` (RFC 9180 §7.1.3).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let (secret, public) = Kem::derive_keypair(seed);
        // An X25519 public key is 32 bytes; DeriveKeyPair never gives the all-zero point.
        let raw: [u8; 32] = public.to_bytes().into();
        let kid = hex::encode(&Sha256::digest(raw)[..RECIPIENT_KID_CHARS / 2]);
        Self { secret, public: RecipientKey { bytes: raw, kid } }
    }

    /// A fresh key pair from `rng` (32 bytes drawn, then [`RecipientSecret::from_seed`]).
    /// Returns the seed too, which is what a node stores (with mode 0600).
    pub fn generate(rng: &mut impl CryptoRng) -> (Self, Zeroizing<[u8; 32]>) {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        (Self::from_seed(&seed), seed)
    }

    /// The public key.
    pub fn public(&self) -> &RecipientKey {
        &self.public
    }

    pub(crate) fn hpke(&self) -> &<Kem as hpke::Kem>::PrivateKey {
        &self.secret
    }
}

impl fmt::Debug for RecipientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientSecret(kid {}, secret not shown)", self.public.kid)
    }
}

/// The secret of one epoch of a scope's group: every clinic of `scope` in the directory the
/// epoch was made for holds it. Zeroized on drop; `Debug` hides the key.
#[derive(Clone)]
pub struct GroupKey {
    scope: Scope,
    epoch: u64,
    key: Zeroizing<[u8; 32]>,
}

impl GroupKey {
    /// A fresh group key for `scope` and `epoch` (32 bytes from `rng`).
    pub fn generate(scope: Scope, epoch: u64, rng: &mut impl CryptoRng) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        Self { scope, epoch, key }
    }

    pub(crate) fn from_parts(scope: Scope, epoch: u64, key: Zeroizing<[u8; 32]>) -> Self {
        Self { scope, epoch, key }
    }

    /// The scope whose clinics hold this key.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The epoch (1 for the first key of a scope, +1 at each membership change).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.key
    }
}

impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupKey({} epoch {}, key not shown)", self.scope, self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_hex_and_hide_secrets() {
        let secret = RecipientSecret::from_seed(&[7; 32]);
        let public = RecipientKey::from_hex(&secret.public().to_hex()).expect("parses");
        assert_eq!(&public, secret.public());
        assert_eq!(public.kid().len(), RECIPIENT_KID_CHARS);
        let shown = format!("{secret:?}");
        assert!(shown.contains(public.kid()) && !shown.contains(&public.to_hex()), "{shown}");
        let group = GroupKey::from_parts(Scope::parse("jp/13").expect("scope"), 2, Zeroizing::new([9; 32]));
        assert!(!format!("{group:?}").contains("09"), "{group:?}");
    }

    #[test]
    fn malformed_and_zero_keys_are_refused() {
        assert_eq!(RecipientKey::from_hex("00").map_err(|e| e.code()), Err("malformed_key"));
        assert_eq!(RecipientKey::from_hex(&"AB".repeat(32)).map_err(|e| e.code()), Err("malformed_key"));
        assert_eq!(RecipientKey::from_bytes(&[0; 32]).map_err(|e| e.code()), Err("weak_key"));
    }

    #[test]
    fn derivation_is_deterministic() {
        let a = RecipientSecret::from_seed(&[1; 32]);
        let b = RecipientSecret::from_seed(&[1; 32]);
        let c = RecipientSecret::from_seed(&[2; 32]);
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), c.public());
    }
}
