//! Ed25519 keys, key ids and advisory digests.
//!
//! A [`PublicKey`] can only be built through checks: the 32 bytes must decode to a curve
//! point and must not be of small order ([`ed25519_dalek::VerifyingKey::is_weak`]).
//! Verification always uses `verify_strict`.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Lowercase hex SHA-256 of a raw 32-byte public key. A lookup hint, never trusted by itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// The key id of raw public key bytes.
    pub fn of_key_bytes(key: &[u8; 32]) -> Self {
        Self(hex::encode(Sha256::digest(key)))
    }

    /// Parses a key id (64 lowercase hex characters).
    pub fn parse(text: &str) -> Result<Self> {
        if is_lower_hex(text, 64) {
            Ok(Self(text.to_owned()))
        } else {
            Err(Error::MalformedKey(format!("key id must be 64 lowercase hex characters, got {text:?}")))
        }
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters, for people.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        KeyId::parse(&text).map_err(serde::de::Error::custom)
    }
}

pub(crate) fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An Ed25519 public key that decoded to a valid point of large order.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    keyid: KeyId,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl PublicKey {
    /// Loads raw key bytes; refuses invalid points and weak (small-order) keys.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| Error::MalformedKey(format!("not a valid Ed25519 point: {}", hex::encode(bytes))))?;
        if key.is_weak() {
            return Err(Error::WeakKey(hex::encode(bytes)));
        }
        Ok(Self { key, keyid: KeyId::of_key_bytes(bytes) })
    }

    /// Loads a key written as 64 lowercase hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let text = text.trim();
        if !is_lower_hex(text, 64) {
            return Err(Error::MalformedKey(format!(
                "public key must be 64 lowercase hex characters, got {} characters",
                text.len()
            )));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|e| Error::MalformedKey(e.to_string()))?;
        Self::from_bytes(&bytes)
    }

    /// The 64-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The key id (SHA-256 of the raw bytes).
    pub fn keyid(&self) -> &KeyId {
        &self.keyid
    }

    /// `verify_strict` of a 64-byte signature over `message`.
    pub fn verify_strict(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        self.key.verify_strict(message, &signature).is_ok()
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        PublicKey::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 secret key (the 32-byte seed). Zeroised on drop by `ed25519-dalek`.
pub struct SecretKey {
    key: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public.to_hex())
    }
}

impl SecretKey {
    /// The key derived from a 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self> {
        let key = SigningKey::from_bytes(seed);
        let public = PublicKey::from_bytes(key.verifying_key().as_bytes())?;
        Ok(Self { key, public })
    }

    /// Loads a seed written as 64 lowercase hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let text = text.trim();
        if !is_lower_hex(text, 64) {
            return Err(Error::MalformedKey("secret key must be 64 lowercase hex characters".into()));
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text, &mut seed).map_err(|e| Error::MalformedKey(e.to_string()))?;
        Self::from_seed(&seed)
    }

    /// The seed as 64 lowercase hex characters (what a `.key` file holds).
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key id of the public half.
    pub fn keyid(&self) -> &KeyId {
        self.public.keyid()
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The id of an advisory (or any payload): `sha256:` + lowercase hex SHA-256 of the payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of payload bytes.
    pub fn of(payload: &[u8]) -> Self {
        Self(Sha256::digest(payload).into())
    }

    /// The raw 32 bytes (used as a store key).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From raw bytes (as read back from a store key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses `sha256:<64 hex>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hex_part = text
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest must start with \"sha256:\", got {text:?}"))?;
        if !is_lower_hex(hex_part, 64) {
            return Err(format!("digest must be sha256: and 64 lowercase hex characters, got {text:?}"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|e| e.to_string())?;
        Ok(Self(bytes))
    }

    /// The hex part without the `sha256:` prefix, first 12 characters, for people.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyid_is_sha256_of_raw_key() {
        let secret = SecretKey::from_seed(&[7u8; 32]).expect("valid seed");
        let expected = hex::encode(Sha256::digest(secret.public().as_bytes()));
        assert_eq!(secret.keyid().as_str(), expected);
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (y = 1) has order 1: a textbook weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(PublicKey::from_bytes(&identity), Err(Error::WeakKey(_))));
    }

    #[test]
    fn hex_round_trip_and_case() {
        let secret = SecretKey::from_seed(&[9u8; 32]).expect("valid seed");
        let text = secret.public().to_hex();
        assert_eq!(PublicKey::from_hex(&text).expect("loads"), *secret.public());
        assert!(PublicKey::from_hex(&text.to_uppercase()).is_err());
        assert_eq!(SecretKey::from_hex(&secret.to_hex()).expect("loads").public(), secret.public());
    }

    #[test]
    fn digest_parse_round_trip() {
        let digest = Digest::of(b"hello");
        assert_eq!(Digest::parse(&digest.to_string()), Ok(digest));
        assert!(Digest::parse("md5:abc").is_err());
    }
}
