//! Hop attestations (`application/vnd.kairan.hop+json`): one per relay a delivery passed.
//!
//! Hops form a hash chain: the first names the advisory digest as `prev`, every later one
//! the digest of the previous hop's payload. `upstream` is the origin id for the first hop
//! and the previous relay's id after that.

use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, HOP_TYPE, encode_payload};
use crate::keys::{Digest, KeyId, SecretKey};
use crate::time::Timestamp;

/// What a relay attests about one delivery it forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hop {
    /// The advisory digest.
    pub advisory: Digest,
    /// The relay's node id (its certificate subject).
    pub relay: String,
    /// The relay's key id (must be the key that signed this hop).
    pub keyid: KeyId,
    /// Where it came from: the origin id (first hop) or the previous relay's id.
    pub upstream: String,
    /// When the relay received it.
    pub received_at: Timestamp,
    /// When the relay forwarded it (after storing it durably).
    pub forwarded_at: Timestamp,
    /// The relay's own output sequence number for this delivery (1, 2, …).
    pub relay_seq: u64,
    /// The advisory digest (first hop) or the digest of the previous hop's payload.
    pub prev: Digest,
}

impl Hop {
    /// Signs the hop with the relay key.
    pub fn sign(&self, relay_key: &SecretKey) -> Envelope {
        Envelope::sign(HOP_TYPE, encode_payload(self), &[relay_key])
    }
}
