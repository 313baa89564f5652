//! Note keys: key names, key ids and verifier keys (c2sp.org/signed-note, "Verifier keys").
//!
//! A verifier key ("vkey") is the text `<name>+<hex key id>+<base64(type || public key)>`.
//! kairan supports two signature types, both Ed25519 with this crate's [`PublicKey`]
//! (weak keys refused, `verify_strict`): `0x01`, plain note signatures (a log signing its
//! checkpoints), and `0x04`, timestamped checkpoint cosignatures (c2sp.org/tlog-cosignature).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::keys::PublicKey;
use crate::limits::MAX_VERIFIER_KEY_BYTES;

/// The signature types kairan signs and verifies (c2sp.org/signed-note, "Signature types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureType {
    /// `0x01`: an Ed25519 signature of the note text.
    Ed25519,
    /// `0x04`: a timestamped Ed25519 cosignature of a checkpoint (`cosignature/v1`).
    CosignatureV1,
}

impl SignatureType {
    /// The identifier byte.
    pub const fn byte(self) -> u8 {
        match self {
            SignatureType::Ed25519 => 0x01,
            SignatureType::CosignatureV1 => 0x04,
        }
    }

    /// The type with this identifier byte, if kairan supports it.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(SignatureType::Ed25519),
            0x04 => Some(SignatureType::CosignatureV1),
            _ => None,
        }
    }
}

/// Whether `name` can name a note key: non-empty, with no Unicode white space and no `+`
/// (which also rules out the newline and every other character a note may not contain in
/// a signature line, except other ASCII control characters, refused by the note syntax).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c < ' ')
}

/// The key id of an Ed25519 key: the first four bytes, big-endian, of
/// `SHA-256(name || 0x0A || type || 32-byte public key)`.
pub fn key_id(name: &str, kind: SignatureType, key: &PublicKey) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', kind.byte()]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A note key that signatures are checked against: a name, a signature type and an Ed25519
/// public key, identified in signature lines by `(name, key id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    kind: SignatureType,
    key: PublicKey,
}

impl NoteVerifier {
    /// The verifier of `key` under `name` for signatures of type `kind`.
    pub fn new(name: &str, kind: SignatureType, key: PublicKey) -> Result<Self> {
        if !is_valid_key_name(name) {
            return Err(Error::MalformedVerifierKey(format!(
                "key name {name:?} is empty or contains white space, '+' or a control character"
            )));
        }
        Ok(Self { name: name.to_owned(), key_id: key_id(name, kind, &key), kind, key })
    }

    /// Parses a verifier key `<name>+<8 lowercase hex>+<base64(type || 32-byte key)>`,
    /// strictly: the key id must be the one computed from name, type and key, the base64
    /// canonical, the type `0x01` or `0x04`, and the key a valid Ed25519 point of large order.
    pub fn parse(vkey: &str) -> Result<Self> {
        let bad = |reason: String| Err(Error::MalformedVerifierKey(reason));
        if vkey.len() > MAX_VERIFIER_KEY_BYTES {
            return Err(Error::Oversize {
                what: "verifier key",
                limit: MAX_VERIFIER_KEY_BYTES,
                actual: vkey.len(),
            });
        }
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return bad("expected <name>+<key id>+<key>".into());
        };
        if !is_valid_key_name(name) {
            return bad(format!("key name {name:?} is empty or contains white space or a control character"));
        }
        if !crate::keys::is_lower_hex(id_hex, 8) {
            return bad(format!("key id {id_hex:?} is not 8 lowercase hex characters"));
        }
        let mut id = [0u8; 4];
        hex::decode_to_slice(id_hex, &mut id).map_err(|e| Error::MalformedVerifierKey(e.to_string()))?;
        let Ok(material) = STANDARD.decode(key_b64) else {
            return bad("key is not canonical standard base64".into());
        };
        let Some((&type_byte, key_bytes)) = material.split_first() else {
            return bad("empty key".into());
        };
        let Some(kind) = SignatureType::from_byte(type_byte) else {
            return bad(format!(
                "unsupported signature type 0x{type_byte:02x} (kairan verifies 0x01 and 0x04)"
            ));
        };
        let Ok(key_bytes) = <[u8; 32]>::try_from(key_bytes) else {
            return bad(format!("an Ed25519 key has 32 bytes, not {}", key_bytes.len()));
        };
        let verifier = Self::new(name, kind, PublicKey::from_bytes(&key_bytes)?)?;
        if verifier.key_id != u32::from_be_bytes(id) {
            return bad(format!(
                "key id {id_hex} is not {:08x}, the id of this name, type and key",
                verifier.key_id
            ));
        }
        Ok(verifier)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature type.
    pub fn kind(&self) -> SignatureType {
        self.kind
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// `<name>+<key id>` (how errors name a key).
    pub(crate) fn label(&self) -> String {
        format!("{}+{:08x}", self.name, self.key_id)
    }
}

impl fmt::Display for NoteVerifier {
    /// The verifier key string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut material = Vec::with_capacity(33);
        material.push(self.kind.byte());
        material.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(material))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of c2sp.org/signed-note.
    const C2SP_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    /// The example key of Go's golang.org/x/mod/sumdb/note tests.
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    #[test]
    fn published_vkeys_parse_and_print_back() {
        for text in [C2SP_VKEY, GO_VKEY] {
            let vkey = NoteVerifier::parse(text).expect("parses");
            assert_eq!(vkey.kind(), SignatureType::Ed25519);
            assert_eq!(vkey.to_string(), text);
        }
        assert_eq!(NoteVerifier::parse(GO_VKEY).expect("parses").key_id(), 0xc74f20a3);
    }

    #[test]
    fn manglings_are_refused() {
        let bad = [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a3+",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
            "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        ];
        for text in bad {
            assert!(NoteVerifier::parse(text).is_err(), "{text:?} parsed");
        }
        let long = format!("{}+00000000+AA==", "a".repeat(MAX_VERIFIER_KEY_BYTES));
        assert_eq!(NoteVerifier::parse(&long).map_err(|e| e.code()), Err("oversize_input"));
    }

    #[test]
    fn key_ids_depend_on_type() {
        let key = crate::fixtures::key("witness-1");
        let plain = NoteVerifier::new("w", SignatureType::Ed25519, key.public().clone()).expect("valid");
        let cosig =
            NoteVerifier::new("w", SignatureType::CosignatureV1, key.public().clone()).expect("valid");
        assert_ne!(plain.key_id(), cosig.key_id());
        assert_eq!(NoteVerifier::parse(&cosig.to_string()), Ok(cosig));
        for name in ["", "a b", "a+b", "a\u{3000}b", "a\tb", "a\u{1}b"] {
            assert!(!is_valid_key_name(name), "{name:?}");
        }
        assert!(is_valid_key_name("kairan.example/日本医師会"));
    }
}
