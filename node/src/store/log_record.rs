//! What a node writes into its segment log: the records the index can be rebuilt from.
//!
//! | kind | body |
//! |---|---|
//! | 1 delivery | meta length (u32 LE) ‖ meta JSON `{digest, origin, seq, scope, relay_seq, received_at}` ‖ delivery bytes |
//! | 2 fork | the [`ForkRecord`] as JSON |
//! | 3 blob | name length (u16 LE) ‖ name ‖ bytes |
//! | 4 tree hashes | per stored hash: its `NodeIndex` key (level ‖ index u64 BE, 9 bytes) ‖ the 32-byte hash |
//! | 5 log fork | the [`LogForkRecord`] as JSON |
//!
//! A delivery record carries everything its index entries are made of, so the index (sled)
//! can always be rebuilt from the log alone; the delivery bytes are stored exactly as they
//! were forwarded or received.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use kairan_protocol::tlog::{HASH_SIZE, Hash, NodeIndex};
use kairan_protocol::{Digest, Timestamp};

use super::segment_log::Frame;
use super::{ForkRecord, LogForkRecord, StoreError, StoredDelivery};

/// Kind byte of a delivery record.
pub const DELIVERY: u8 = 1;
/// Kind byte of a fork record.
pub const FORK: u8 = 2;
/// Kind byte of a blob record.
pub const BLOB: u8 = 3;
/// Kind byte of a tree-hashes record (the transparency log's stored hashes of one append).
pub const TREE_HASHES: u8 = 4;
/// Kind byte of a log-fork record.
pub const LOG_FORK: u8 = 5;

/// Bytes of one stored hash in a tree-hashes record.
const TREE_ENTRY_BYTES: usize = 9 + HASH_SIZE;

/// A decoded log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    /// An accepted delivery.
    Delivery(StoredDelivery),
    /// A fork kept for audit.
    Fork(ForkRecord),
    /// A named blob.
    Blob(String, Vec<u8>),
    /// Stored hashes of the transparency log.
    TreeHashes(Vec<(NodeIndex, Hash)>),
    /// Evidence of a parent's inconsistent logs.
    LogFork(LogForkRecord),
}

#[derive(Debug, Serialize, Deserialize)]
struct DeliveryMeta {
    digest: Digest,
    origin: String,
    seq: u64,
    scope: String,
    relay_seq: u64,
    received_at: Timestamp,
}

fn corrupt(reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt { tree: "segments", reason: reason.into() }
}

/// The body of a delivery record.
pub fn encode_delivery(record: &StoredDelivery) -> Vec<u8> {
    let meta = DeliveryMeta {
        digest: record.digest,
        origin: record.origin.clone(),
        seq: record.seq,
        scope: record.scope.clone(),
        relay_seq: record.relay_seq,
        received_at: record.received_at,
    };
    let meta = serde_json::to_vec(&meta).unwrap_or_default();
    let mut body = Vec::with_capacity(4 + meta.len() + record.delivery.len());
    body.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    body.extend_from_slice(&meta);
    body.extend_from_slice(&record.delivery);
    body
}

/// The body of a fork record.
pub fn encode_fork(fork: &ForkRecord) -> Vec<u8> {
    serde_json::to_vec(fork).unwrap_or_default()
}

/// The body of a blob record.
pub fn encode_blob(name: &str, value: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + name.len() + value.len());
    body.extend_from_slice(&(name.len() as u16).to_le_bytes());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(value);
    body
}

/// The body of a tree-hashes record.
pub fn encode_tree_hashes(hashes: &[(NodeIndex, Hash)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(hashes.len() * TREE_ENTRY_BYTES);
    for (node, hash) in hashes {
        body.extend_from_slice(&node.to_key());
        body.extend_from_slice(&hash.0);
    }
    body
}

/// The body of a log-fork record.
pub fn encode_log_fork(record: &LogForkRecord) -> Vec<u8> {
    serde_json::to_vec(record).unwrap_or_default()
}

fn decode_tree_hashes(body: &[u8]) -> Result<Vec<(NodeIndex, Hash)>, StoreError> {
    if body.len() % TREE_ENTRY_BYTES != 0 {
        return Err(corrupt(format!("tree-hashes record of {} bytes", body.len())));
    }
    body.chunks_exact(TREE_ENTRY_BYTES)
        .map(|entry| {
            let node = NodeIndex::from_key(&entry[..9]).ok_or_else(|| corrupt("tree-hashes record key"))?;
            let hash: [u8; HASH_SIZE] =
                entry[9..].try_into().map_err(|_| corrupt("tree-hashes record hash"))?;
            Ok((node, Hash(hash)))
        })
        .collect()
}

/// Decodes a frame read from the log.
pub fn decode(frame: Frame) -> Result<LogRecord, StoreError> {
    match frame.kind {
        DELIVERY => {
            let meta_len = frame
                .body
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| corrupt("delivery record without its meta length"))?;
            let meta_end = 4usize.checked_add(meta_len).filter(|end| *end <= frame.body.len());
            let meta_end = meta_end.ok_or_else(|| corrupt("delivery record meta past its end"))?;
            let meta: DeliveryMeta = serde_json::from_slice(&frame.body[4..meta_end])
                .map_err(|e| corrupt(format!("delivery record meta: {e}")))?;
            let mut body = frame.body;
            let delivery = Bytes::from(body.split_off(meta_end));
            Ok(LogRecord::Delivery(StoredDelivery {
                digest: meta.digest,
                origin: meta.origin,
                seq: meta.seq,
                scope: meta.scope,
                relay_seq: meta.relay_seq,
                received_at: meta.received_at,
                delivery,
            }))
        }
        FORK => serde_json::from_slice(&frame.body)
            .map(LogRecord::Fork)
            .map_err(|e| corrupt(format!("fork record: {e}"))),
        BLOB => {
            let name_len = frame
                .body
                .get(..2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                .ok_or_else(|| corrupt("blob record without its name length"))?;
            let name = frame
                .body
                .get(2..2 + name_len)
                .and_then(|n| std::str::from_utf8(n).ok())
                .ok_or_else(|| corrupt("blob record name"))?
                .to_owned();
            Ok(LogRecord::Blob(name, frame.body[2 + name_len..].to_vec()))
        }
        TREE_HASHES => decode_tree_hashes(&frame.body).map(LogRecord::TreeHashes),
        LOG_FORK => serde_json::from_slice(&frame.body)
            .map(LogRecord::LogFork)
            .map_err(|e| corrupt(format!("log fork record: {e}"))),
        other => Err(corrupt(format!("unknown record kind {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = StoredDelivery {
            digest: Digest::of(b"x"),
            origin: "mhlw".into(),
            seq: 4,
            scope: "jp/13".into(),
            relay_seq: 9,
            received_at: Timestamp::from_unix_ms(1234),
            delivery: Bytes::from_static(br#"{"advisory":{}}"#),
        };
        let frame = Frame { kind: DELIVERY, body: encode_delivery(&record) };
        assert_eq!(decode(frame).expect("decode"), LogRecord::Delivery(record));
        let fork = ForkRecord {
            digest: Digest::of(b"f"),
            origin: "mhlw".into(),
            scope: "jp".into(),
            seq: 4,
            held: None,
            at: Timestamp::from_unix_ms(1),
            delivery: "{}".into(),
        };
        assert_eq!(
            decode(Frame { kind: FORK, body: encode_fork(&fork) }).expect("fork"),
            LogRecord::Fork(fork)
        );
        let blob = Frame { kind: BLOB, body: encode_blob("trust_bundle", b"{}") };
        assert_eq!(decode(blob).expect("blob"), LogRecord::Blob("trust_bundle".into(), b"{}".to_vec()));
        let hashes = vec![
            (NodeIndex::new(0, 3), kairan_protocol::tlog::leaf_hash(b"a")),
            (NodeIndex::new(2, 0), kairan_protocol::tlog::leaf_hash(b"b")),
        ];
        let frame = Frame { kind: TREE_HASHES, body: encode_tree_hashes(&hashes) };
        assert_eq!(decode(frame).expect("tree hashes"), LogRecord::TreeHashes(hashes));
        let log_fork = LogForkRecord {
            parent: "jp".into(),
            held: "a".into(),
            shown: "b".into(),
            proof: vec![],
            statement: None,
            reason: "r".into(),
            leaf: None,
            at: Timestamp::from_unix_ms(1),
        };
        let frame = Frame { kind: LOG_FORK, body: encode_log_fork(&log_fork) };
        assert_eq!(decode(frame).expect("log fork"), LogRecord::LogFork(log_fork));
    }

    #[test]
    fn damaged_bodies_are_corruption_not_panics() {
        for (kind, body) in [
            (DELIVERY, vec![200, 0, 0, 0, b'{']),
            (DELIVERY, vec![1]),
            (BLOB, vec![9, 0, b'a']),
            (TREE_HASHES, vec![0; 40]),
            (LOG_FORK, vec![b'{']),
            (7, vec![]),
        ] {
            assert!(matches!(decode(Frame { kind, body }), Err(StoreError::Corrupt { .. })));
        }
    }
}
