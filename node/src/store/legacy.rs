//! The store layout before the segment log — sled alone at the root of the store directory,
//! each delivery a JSON value in its `deliveries` tree — migrated once, when a
//! [`super::DiskStore`] opens such a directory.
//!
//! Everything is copied into the new store with one durable commit (deliveries in output-log
//! order, forks, rejections, the known cursors and blobs); only then are the old files moved
//! aside into `pre-segment-log/` (kept, not deleted: an operator may want them back). A crash
//! between the two leaves the old files in place over a store that already holds their
//! contents: the next open sees that and only moves them.

use std::path::Path;

use super::durable_fs::{self, io_error};
use super::sled_index::{digest_from, engine};
use super::{
    ForkRecord, PUBLISHED_CURSOR, Rejection, SYNC_CURSOR, StoreError, StoredDelivery, TRUST_BLOB, WriteBatch,
    WriteOp,
};

/// Where the old files are moved.
pub const MOVED_ASIDE: &str = "pre-segment-log";

/// Whether `dir` holds a store of the old layout.
pub fn present(dir: &Path) -> bool {
    dir.join("db").is_file() && dir.join("conf").is_file()
}

fn corrupt(tree: &'static str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { tree, reason: format!("pre-segment-log store: {error}") }
}

/// Everything the old store in `dir` holds, as one batch.
pub fn read(dir: &Path) -> Result<WriteBatch, StoreError> {
    let db = sled::Config::new().path(dir).flush_every_ms(None).open().map_err(|e| {
        StoreError::Engine(format!("cannot open the pre-segment-log store at {}: {e}", dir.display()))
    })?;
    let tree = |name: &str| db.open_tree(name).map_err(engine);
    let (deliveries, output_log, forks, rejections, meta) =
        (tree("deliveries")?, tree("output_log")?, tree("forks")?, tree("rejections")?, tree("meta")?);
    let mut ops = Vec::new();
    for entry in output_log.iter() {
        let (_, digest) = entry.map_err(engine)?;
        let digest = digest_from("output_log", &digest)?;
        let value = deliveries.get(digest.as_bytes()).map_err(engine)?;
        let value = value.ok_or_else(|| corrupt("output_log", format!("{digest} has no delivery")))?;
        let record: StoredDelivery = serde_json::from_slice(&value).map_err(|e| corrupt("deliveries", e))?;
        ops.push(WriteOp::Accepted(record));
    }
    for value in forks.iter().values() {
        let fork: ForkRecord =
            serde_json::from_slice(&value.map_err(engine)?).map_err(|e| corrupt("forks", e))?;
        ops.push(WriteOp::Fork(fork));
    }
    for value in rejections.iter().values() {
        let rejection: Rejection =
            serde_json::from_slice(&value.map_err(engine)?).map_err(|e| corrupt("rejections", e))?;
        ops.push(WriteOp::Rejection(rejection));
    }
    for name in [SYNC_CURSOR, PUBLISHED_CURSOR] {
        if let Some(value) = meta.get(format!("cursor/{name}")).map_err(engine)? {
            let bytes: [u8; 8] = value.as_ref().try_into().map_err(|_| corrupt("meta", "cursor length"))?;
            ops.push(WriteOp::Cursor(name, u64::from_be_bytes(bytes)));
        }
    }
    if let Some(value) = meta.get(format!("blob/{TRUST_BLOB}")).map_err(engine)? {
        ops.push(WriteOp::Blob(TRUST_BLOB, value.to_vec()));
    }
    Ok(WriteBatch { ops })
}

/// Moves the old store's files into [`MOVED_ASIDE`], durably.
pub fn move_aside(dir: &Path) -> Result<(), StoreError> {
    let aside = dir.join(MOVED_ASIDE);
    durable_fs::create_private_dir_all(&aside)?;
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let name = entry.map_err(|e| io_error(dir, e))?.file_name();
        let text = name.to_string_lossy();
        if text == "db" || text == "conf" || text == "blobs" || text.starts_with("snap.") {
            let (from, to) = (dir.join(&name), aside.join(&name));
            std::fs::rename(&from, &to).map_err(|e| io_error(&from, e))?;
        }
    }
    durable_fs::sync_dir(&aside)?;
    durable_fs::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DiskStore, Store};
    use kairan_protocol::{Digest, Timestamp};

    #[test]
    fn an_old_store_is_migrated_and_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = StoredDelivery {
            digest: Digest::of(b"old"),
            origin: "mhlw".into(),
            seq: 1,
            scope: "jp".into(),
            relay_seq: 1,
            received_at: Timestamp::from_unix_ms(7),
            delivery: "{}".into(),
        };
        {
            // The layout as the old store wrote it.
            let db = sled::Config::new().path(dir.path()).open().expect("sled");
            let digest = record.digest.as_bytes().to_vec();
            let value = serde_json::to_vec(&record).expect("json");
            db.open_tree("deliveries").expect("tree").insert(&digest, value).expect("insert");
            db.open_tree("output_log").expect("tree").insert(1u64.to_be_bytes(), digest).expect("insert");
            let meta = db.open_tree("meta").expect("tree");
            meta.insert("cursor/sync", &9u64.to_be_bytes()).expect("insert");
            meta.insert("blob/trust_bundle", b"{}").expect("insert");
            db.flush().expect("flush");
        }
        assert!(present(dir.path()));
        let store = DiskStore::open(dir.path()).expect("migrates");
        assert!(!present(dir.path()), "old files moved aside");
        assert!(dir.path().join(MOVED_ASIDE).join("db").is_file());
        assert_eq!(store.get(&record.digest).expect("get"), Some(record));
        let state = store.restore().expect("restore");
        assert_eq!((state.sync_cursor, state.last_relay_seq), (9, 1));
        assert_eq!(state.trust_bundle.as_deref(), Some(&b"{}"[..]));
    }
}
