//! [`Store`] on sled `=0.34.7`.
//!
//! Trees: `deliveries` (digest → record JSON), `origin_index` (origin ‖ 0x00 ‖ seq BE →
//! digest), `output_log` (relay_seq BE → digest), `rejections` (id BE → JSON), `forks`
//! (digest → JSON), `meta` (`cursor/NAME` → u64 BE, `blob/NAME` → bytes). Accepted
//! deliveries are written with one multi-tree transaction.

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use kairan_protocol::Digest;

use super::{
    ForkRecord, MAX_REJECTIONS_KEPT, PUBLISHED_CURSOR, Rejection, RestoredState, SYNC_CURSOR, Store,
    StoreError, StoredDelivery, TRUST_BLOB, WriteBatch, WriteOp,
};

/// A sled database holding one node's state.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    deliveries: sled::Tree,
    origin_index: sled::Tree,
    output_log: sled::Tree,
    rejections: sled::Tree,
    forks: sled::Tree,
    meta: sled::Tree,
}

fn engine(error: sled::Error) -> StoreError {
    StoreError::Engine(error.to_string())
}

fn origin_key(origin: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(origin.len() + 9);
    key.extend_from_slice(origin.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn split_origin_key(key: &[u8]) -> Option<(String, u64)> {
    let split = key.len().checked_sub(9)?;
    if key.get(split) != Some(&0) {
        return None;
    }
    let origin = std::str::from_utf8(&key[..split]).ok()?.to_owned();
    let seq = u64::from_be_bytes(key[split + 1..].try_into().ok()?);
    Some((origin, seq))
}

fn digest_from(tree: &'static str, bytes: &[u8]) -> Result<Digest, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt { tree, reason: format!("digest of {} bytes", bytes.len()) })?;
    Ok(Digest::from_bytes(array))
}

fn u64_from(tree: &'static str, bytes: &[u8]) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt { tree, reason: format!("u64 of {} bytes", bytes.len()) })?;
    Ok(u64::from_be_bytes(array))
}

fn decode<T: serde::de::DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { tree, reason: e.to_string() })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl SledStore {
    /// Opens (or creates) the database in `dir`.
    ///
    /// sled's periodic flusher is off: every write that must be durable is flushed
    /// explicitly before it is acknowledged or forwarded, and the flusher is a thread per
    /// database that wakes and fsyncs twice a second even when idle (1,000 clinic stores in
    /// one process — `kairan bench` — cost 1,000 threads and ~0.18 CPU-s/s doing nothing).
    /// Writes that are not flushed at once (the published cursor) become durable with the
    /// next flush; losing one only republishes deliveries, which children deduplicate.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        // A database dropped a moment ago in this process (an in-process node restarting) may
        // still hold its file lock while sled's background threads wind down: retry briefly.
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new().path(dir).flush_every_ms(None).open() {
                Ok(db) => break db,
                Err(error) if attempts < 60 && error.to_string().contains("could not acquire lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(error) => {
                    return Err(StoreError::Engine(format!(
                        "cannot open store at {}: {error} (is another kairan process using it?)",
                        dir.display()
                    )));
                }
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(engine);
        Ok(Self {
            deliveries: tree("deliveries")?,
            origin_index: tree("origin_index")?,
            output_log: tree("output_log")?,
            rejections: tree("rejections")?,
            forks: tree("forks")?,
            meta: tree("meta")?,
            db,
        })
    }
}

impl SledStore {
    fn put_accepted(&self, record: &StoredDelivery) -> Result<(), StoreError> {
        let value = encode(record);
        let digest = *record.digest.as_bytes();
        let index_key = origin_key(&record.origin, record.seq);
        let log_key = record.relay_seq.to_be_bytes();
        (&self.deliveries, &self.origin_index, &self.output_log)
            .transaction(|(deliveries, origin_index, output_log)| {
                deliveries.insert(&digest[..], value.as_slice())?;
                origin_index.insert(index_key.as_slice(), &digest[..])?;
                output_log.insert(&log_key[..], &digest[..])?;
                Ok::<(), ConflictableTransactionError<StoreError>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(inner) => inner,
                TransactionError::Storage(storage) => engine(storage),
            })
    }

    fn put_rejection(&self, rejection: &Rejection) -> Result<(), StoreError> {
        let id = self.db.generate_id().map_err(engine)?;
        self.rejections.insert(id.to_be_bytes(), encode(rejection)).map_err(engine)?;
        // Keep the most recent MAX_REJECTIONS_KEPT: a flood of bad input cannot fill the disk.
        if let Some(oldest_kept) = id.checked_sub(MAX_REJECTIONS_KEPT) {
            for entry in self.rejections.range(..oldest_kept.to_be_bytes()) {
                let (key, _) = entry.map_err(engine)?;
                self.rejections.remove(key).map_err(engine)?;
            }
        }
        Ok(())
    }
}

impl Store for SledStore {
    fn commit(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        for op in &batch.ops {
            match op {
                WriteOp::Accepted(record) => self.put_accepted(record)?,
                WriteOp::Rejection(rejection) => self.put_rejection(rejection)?,
                WriteOp::Fork(fork) => {
                    self.forks.insert(fork.digest.as_bytes(), encode(fork)).map_err(engine)?;
                }
                WriteOp::Cursor(name, value) => {
                    self.meta.insert(format!("cursor/{name}"), &value.to_be_bytes()).map_err(engine)?;
                }
                WriteOp::Blob(name, value) => {
                    self.meta.insert(format!("blob/{name}"), value.as_slice()).map_err(engine)?;
                }
            }
        }
        // Not sled's `flush_async`: it waits for the log on sled's own I/O pool, the pool that
        // also writes the log, so enough concurrent flushes (many stores in one process, as in
        // `kairan bench` at 100 clinics) occupy every pool thread and never return
        // (spacejam/sled#1308). Callers run `commit` on a blocking thread.
        self.db.flush().map(|_| ()).map_err(engine)
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.deliveries.contains_key(digest.as_bytes()).map_err(engine)
    }

    fn get(&self, digest: &Digest) -> Result<Option<StoredDelivery>, StoreError> {
        match self.deliveries.get(digest.as_bytes()).map_err(engine)? {
            Some(bytes) => Ok(Some(decode("deliveries", &bytes)?)),
            None => Ok(None),
        }
    }

    fn rejections(&self) -> Result<Vec<Rejection>, StoreError> {
        self.rejections.iter().values().map(|v| decode("rejections", &v.map_err(engine)?)).collect()
    }

    fn forks(&self) -> Result<Vec<ForkRecord>, StoreError> {
        self.forks.iter().values().map(|v| decode("forks", &v.map_err(engine)?)).collect()
    }

    fn log_after(&self, relay_seq: u64, limit: usize) -> Result<Vec<StoredDelivery>, StoreError> {
        let start = relay_seq.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for entry in self.output_log.range(start..).take(limit) {
            let (_, digest_bytes) = entry.map_err(engine)?;
            let digest = digest_from("output_log", &digest_bytes)?;
            let record = self.get(&digest)?.ok_or_else(|| StoreError::Corrupt {
                tree: "output_log",
                reason: format!("entry for {digest} has no delivery"),
            })?;
            out.push(record);
        }
        Ok(out)
    }

    fn restore(&self) -> Result<RestoredState, StoreError> {
        let mut state = RestoredState::default();
        for entry in self.origin_index.iter() {
            let (key, digest_bytes) = entry.map_err(engine)?;
            let (origin, seq) = split_origin_key(&key)
                .ok_or_else(|| StoreError::Corrupt { tree: "origin_index", reason: "bad key".into() })?;
            // Keys sort by origin then seq.
            state.push_held(origin, seq, digest_from("origin_index", &digest_bytes)?);
        }
        if let Some(entry) = self.output_log.last().map_err(engine)? {
            state.last_relay_seq = u64_from("output_log", &entry.0)?;
        }
        state.sync_cursor = self.cursor(SYNC_CURSOR)?;
        state.published = self.cursor(PUBLISHED_CURSOR)?;
        state.trust_bundle = self.blob(TRUST_BLOB)?;
        let newest = self.log_after(state.last_relay_seq.saturating_sub(1), 1)?;
        state.take_chain(newest.first());
        Ok(state)
    }

    fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        match self.meta.get(format!("cursor/{name}")).map_err(engine)? {
            Some(bytes) => u64_from("meta", &bytes),
            None => Ok(0),
        }
    }

    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(format!("blob/{name}")).map_err(engine)?.map(|v| v.to_vec()))
    }

    fn check_integrity(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for entry in self.deliveries.iter() {
            let (key, value) = entry.map_err(engine)?;
            let record: StoredDelivery = decode("deliveries", &value)?;
            if record.digest.as_bytes()[..] != key[..] {
                return Err(StoreError::Corrupt {
                    tree: "deliveries",
                    reason: format!("key mismatch for {}", record.digest),
                });
            }
            count += 1;
        }
        for (tree, name) in [(&self.origin_index, "origin_index"), (&self.output_log, "output_log")] {
            for entry in tree.iter() {
                let (_, digest_bytes) = entry.map_err(engine)?;
                let digest = digest_from(name, &digest_bytes)?;
                if !self.contains(&digest)? {
                    return Err(StoreError::Corrupt {
                        tree: name,
                        reason: format!("{digest} has no delivery"),
                    });
                }
            }
        }
        self.rejections()?;
        self.forks()?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::Timestamp;
    use kairan_protocol::sequence::ChainHead;

    fn record(origin: &str, seq: u64, relay_seq: u64) -> StoredDelivery {
        StoredDelivery {
            digest: Digest::of(format!("{origin}-{seq}").as_bytes()),
            origin: origin.into(),
            seq,
            scope: "jp".into(),
            relay_seq,
            received_at: Timestamp::from_unix_ms(1000),
            delivery: "{}".into(),
        }
    }

    #[test]
    fn accepted_deliveries_survive_reopen_with_their_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = SledStore::open(dir.path()).expect("open");
            let batch = WriteBatch {
                ops: vec![
                    WriteOp::Accepted(record("mhlw", 1, 1)),
                    WriteOp::Accepted(record("mhlw", 2, 2)),
                    WriteOp::Accepted(record("nisc", 1, 3)),
                    WriteOp::Cursor(PUBLISHED_CURSOR, 2),
                    WriteOp::Blob(TRUST_BLOB, b"{}".to_vec()),
                ],
            };
            store.commit(&batch).expect("commit");
        }
        let store = SledStore::open(dir.path()).expect("reopen");
        let state = store.restore().expect("restore");
        assert_eq!(state.last_relay_seq, 3);
        assert_eq!(state.heads.len(), 2);
        assert_eq!(
            state.heads[0],
            ("mhlw".into(), ChainHead { seq: 2, digest: record("mhlw", 2, 2).digest })
        );
        assert_eq!(state.held.len(), 3);
        assert_eq!((state.published, state.sync_cursor), (2, 0));
        assert_eq!(state.trust_bundle.as_deref(), Some(&b"{}"[..]));
        assert_eq!(store.log_after(1, 10).expect("log").len(), 2);
        assert_eq!(store.get(&record("nisc", 1, 3).digest).expect("get"), Some(record("nisc", 1, 3)));
        assert_eq!(store.check_integrity().expect("intact"), 3);
    }

    #[test]
    fn rejections_and_forks_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path()).expect("open");
        let rejection = Rejection {
            at: Timestamp::from_unix_ms(5),
            claimed_digest: None,
            code: "bad_signature".into(),
            message: "bad".into(),
            source: "t".into(),
            size: 3,
        };
        store.commit(&WriteBatch { ops: vec![WriteOp::Rejection(rejection.clone())] }).expect("commit");
        assert_eq!(store.rejections().expect("list"), vec![rejection]);
        assert!(split_origin_key(&origin_key("a-b", 7)) == Some(("a-b".into(), 7)));
    }
}
