//! Merkle tree hashing of transparency logs, as in RFC 9162 §2.1 (the tree of RFC 6962).
//!
//! A log is a list of leaves `d(0) … d(n-1)`. Its tree head is the Merkle Tree Hash
//! `MTH(D[n])` with SHA-256, where a leaf hashes as `SHA-256(0x00 || d)` ([`leaf_hash`]), an
//! interior node as `SHA-256(0x01 || left || right)` ([`node_hash`]), the empty tree as
//! `SHA-256("")` ([`empty_root`]), and a list of `n > 1` leaves splits at `k`, the largest
//! power of two smaller than `n`: `MTH(D[n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))`.
//!
//! # Storing a log without holding it
//! A node never needs its leaves in memory. It keeps:
//! - a [`Frontier`]: the roots of the perfect subtrees that make up the current tree (one per
//!   1 bit of the size, so at most 64 hashes). [`Frontier::append`] adds a leaf in O(log n)
//!   and [`Frontier::root`] gives the tree head in O(log n);
//! - the **stored hashes**: the hash of every *complete* subtree, keyed by its
//!   [`NodeIndex`] `(level, index)` — the subtree of the `2^level` leaves starting at
//!   `index · 2^level`. Appending leaf `n` completes `1 + (trailing ones of n)` subtrees, and
//!   [`Frontier::append`] returns exactly those hashes: that is what a node persists per
//!   append (on average two hashes), as in the "stored hashes" of Go's `sumdb/tlog`.
//!
//! Stored hashes never change once written, and every hash a proof needs is a fold of at
//! most `2·log₂ n` of them: [`prove`] plans which [`NodeIndex`]es a proof needs (a pure
//! [`ProofPlan`], so a sans-IO core can ask its store for them in one batch), reads them
//! through a [`HashReader`], and assembles the proof. [`verify`] checks proofs with the
//! algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

pub mod frontier;
pub mod prove;
pub mod verify;

pub use frontier::Frontier;
pub use prove::{
    HashReader, MemoryHashes, ProofPlan, consistency_plan, inclusion_plan, prove_consistency,
    prove_inclusion, root_plan, tree_root,
};
pub use verify::{root_from_inclusion, verify_consistency, verify_inclusion};

/// Bytes in a [`Hash`](struct@Hash).
pub const HASH_SIZE: usize = 32;

/// A SHA-256 hash in a Merkle tree: a leaf hash, an interior node or a tree head.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// The 64-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        if !crate::keys::is_lower_hex(text, 2 * HASH_SIZE) {
            return None;
        }
        let mut bytes = [0u8; HASH_SIZE];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The standard base64 form with padding (44 characters), as in checkpoints.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses strict standard base64 (canonical padding and trailing bits) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Option<Self> {
        if text.len() != 44 {
            return None;
        }
        let bytes = STANDARD.decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    Hash(hasher.finalize().into())
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// The tree head of the empty log: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The tree head of a list of leaf hashes, computed in memory (O(n) time, O(log n) space).
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::new();
    for leaf in leaves {
        // A slice never holds 2^64 leaves, so appending cannot overflow the size.
        if frontier.append(*leaf).is_err() {
            break;
        }
    }
    frontier.root()
}

/// The position of a complete subtree: the `2^level` leaves starting at `index · 2^level`.
/// Level 0 is the leaves themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex {
    /// Height of the subtree (0 for a leaf, at most 63).
    pub level: u8,
    /// Position of the subtree among those of its level, from the left.
    pub index: u64,
}

impl NodeIndex {
    /// The subtree of `2^level` leaves numbered `index` from the left.
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    /// A store key for the subtree: the level byte, then the index as 8 big-endian bytes
    /// (keys sort by level, then from left to right).
    pub fn to_key(self) -> [u8; 9] {
        let mut key = [0u8; 9];
        key[0] = self.level;
        key[1..].copy_from_slice(&self.index.to_be_bytes());
        key
    }

    /// The inverse of [`NodeIndex::to_key`].
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let (&level, index) = key.split_first()?;
        let index: [u8; 8] = index.try_into().ok()?;
        Some(Self { level, index: u64::from_be_bytes(index) })
    }
}

/// The largest power of two strictly smaller than `n` (`n ≥ 2`): RFC 9162's split point `k`.
pub(crate) fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_rfc6962() {
        // Published values: the empty tree, and the leaf hashes of "" and of 0x00.
        assert_eq!(empty_root().to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            leaf_hash(&[0x00]).to_hex(),
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
        );
        // MTH of the first two reference leaves.
        assert_eq!(
            node_hash(&leaf_hash(b""), &leaf_hash(&[0x00])).to_hex(),
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
        );
        assert_eq!(root_of(&[]), empty_root());
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (u64::MAX, 1 << 63)] {
            assert_eq!(split_point(n), k, "n = {n}");
        }
    }

    #[test]
    fn hash_text_forms_are_strict() {
        let hash = leaf_hash(b"x");
        assert_eq!(Hash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(Hash::from_base64(&hash.to_base64()), Some(hash));
        assert_eq!(Hash::from_hex(&hash.to_hex().to_uppercase()), None);
        assert_eq!(Hash::from_base64(&hash.to_base64().replace('=', "")), None);
        // 32 zero bytes are 43 'A's and '='; a final 'B' sets an unused bit: not canonical.
        let zero = Hash::default().to_base64();
        assert_eq!(zero, format!("{}=", "A".repeat(43)));
        assert_eq!(Hash::from_base64(&format!("{}B=", "A".repeat(42))), None);
        assert_eq!(Hash::from_base64(&zero), Some(Hash::default()));
    }

    #[test]
    fn node_keys_round_trip() {
        for node in [NodeIndex::new(0, 0), NodeIndex::new(3, 12345), NodeIndex::new(63, 1)] {
            assert_eq!(NodeIndex::from_key(&node.to_key()), Some(node));
        }
        assert_eq!(NodeIndex::from_key(&[0u8; 8]), None);
        assert!(NodeIndex::new(0, 9).to_key() < NodeIndex::new(1, 0).to_key());
    }
}
