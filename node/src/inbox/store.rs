//! The clinic's store: its [`DiskStore`] and the readable copies, durable together before a
//! commit returns — so before the driver acknowledges the delivery to the district.
//!
//! A commit first makes the batch durable in the disk store, then writes the copies of the
//! deliveries it accepted ([`durable_fs::write_files_durably`]: every file written, then each
//! `fdatasync`ed, renamed, and the directory `fsync`ed once). A crash between the two leaves
//! copies missing, never a copy of something the store does not hold; [`InboxStore::open`]
//! writes the missing ones again.

use std::path::{Path, PathBuf};

use kairan_protocol::Digest;
use kairan_protocol::tlog::{Hash, NodeIndex};

use super::{copies_dir, copy_of, copy_path};
use crate::store::durable_fs;
use crate::store::{
    DiskStore, ForkRecord, LogForkRecord, Rejection, RestoredState, Store, StoreError, StoredDelivery,
    WriteBatch, WriteOp,
};

/// A clinic's store and its inbox copies.
#[derive(Debug, Clone)]
pub struct InboxStore {
    store: DiskStore,
    copies: PathBuf,
}

/// Where the clinic's store lives in its data directory.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

impl InboxStore {
    /// Opens the store in `DATA_DIR/store` and the copies in `DATA_DIR/advisories` (0700),
    /// writing any copy a crash left missing.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let store = DiskStore::open(&store_dir(data_dir))?;
        let copies = copies_dir(data_dir);
        durable_fs::create_private_dir_all(&copies)?;
        durable_fs::make_private(&copies)?;
        let inbox = Self { store, copies };
        let missing: Vec<StoredDelivery> = inbox
            .store
            .all()?
            .into_iter()
            .filter(|r| !copy_path(&inbox.copies, &r.digest).exists())
            .collect();
        inbox.write_copies(missing.iter())?;
        Ok(inbox)
    }

    /// The disk store itself (for reading).
    pub fn disk(&self) -> &DiskStore {
        &self.store
    }

    fn write_copies<'a>(&self, records: impl Iterator<Item = &'a StoredDelivery>) -> Result<(), StoreError> {
        let copies: Vec<(String, Vec<u8>)> = records
            .map(|r| copy_of(&r.digest, r.relay_seq, r.received_at, &r.delivery))
            .collect::<Result<_, _>>()?;
        durable_fs::write_files_durably(
            &self.copies,
            copies.iter().map(|(name, bytes)| (name.clone(), bytes.as_slice())),
        )
    }
}

impl Store for InboxStore {
    fn commit(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.store.commit(batch)?;
        self.write_copies(batch.ops.iter().filter_map(|op| match op {
            WriteOp::Accepted(record) => Some(record),
            _ => None,
        }))
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.store.contains(digest)
    }

    fn get(&self, digest: &Digest) -> Result<Option<StoredDelivery>, StoreError> {
        self.store.get(digest)
    }

    fn log_after(&self, relay_seq: u64, limit: usize) -> Result<Vec<StoredDelivery>, StoreError> {
        self.store.log_after(relay_seq, limit)
    }

    fn rejections(&self) -> Result<Vec<Rejection>, StoreError> {
        self.store.rejections()
    }

    fn forks(&self) -> Result<Vec<ForkRecord>, StoreError> {
        self.store.forks()
    }

    fn log_forks(&self) -> Result<Vec<LogForkRecord>, StoreError> {
        self.store.log_forks()
    }

    fn tree_hashes(&self, nodes: &[NodeIndex]) -> Result<Vec<Hash>, StoreError> {
        self.store.tree_hashes(nodes)
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        self.store.tree_size()
    }

    fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        self.store.cursor(name)
    }

    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.blob(name)
    }

    fn restore(&self) -> Result<RestoredState, StoreError> {
        self.store.restore()
    }

    fn check_integrity(&self) -> Result<usize, StoreError> {
        self.store.check_integrity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn copies_are_durable_with_the_commit_and_rewritten_when_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = fixtures::Hierarchy::standard();
        let delivery = hierarchy.delivery(&fixtures::sample_advisory("mhlw", 1, None), 3);
        let record = StoredDelivery {
            digest: Digest::of(&delivery.advisory.payload),
            origin: "mhlw".into(),
            seq: 1,
            scope: "jp".into(),
            relay_seq: 1,
            received_at: hierarchy.later(),
            delivery: delivery.to_json().into(),
        };
        let inbox = InboxStore::open(dir.path()).expect("open");
        inbox.commit(&WriteBatch { ops: vec![WriteOp::Accepted(record.clone())] }).expect("commit");
        let copy = copy_path(&copies_dir(dir.path()), &record.digest);
        assert_eq!(std::fs::metadata(&copy).expect("copy").mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(copies_dir(dir.path())).expect("dir").mode() & 0o777, 0o700);
        let (entries, refused) =
            super::super::read_inbox(dir.path(), &hierarchy.anchors, &super::super::Recipient::default())
                .expect("read");
        assert_eq!((entries.len(), refused.len()), (1, 0));
        drop(inbox);
        std::fs::remove_file(&copy).expect("rm");
        let inbox = InboxStore::open(dir.path()).expect("reopen");
        assert!(copy.exists(), "rewritten at open");
        assert_eq!(inbox.disk().check_integrity().expect("intact"), 1);
    }
}
