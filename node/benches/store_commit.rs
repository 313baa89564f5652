//! `Store::commit` of groups of 1, 16 and 128 deliveries of ~21 KB: the store as it is
//! (segment log + sled index, `DiskStore`), beside the two alternatives it was chosen over.
//!
//! - `disk_store`: [`DiskStore::commit`] — one write and one `fdatasync` of the segment for
//!   the group, then the index in sled (flushed, not synced: it is rebuilt from the log).
//! - `sled_only`: the store before it (each delivery JSON in sled, a three-tree transaction
//!   per delivery, `Db::flush`) — **not** durable on a power cut: the flush ends in
//!   `sync_file_range` and blob files are never synced.
//! - `sled_fdatasync`: the same plus what sled would need to be durable: `fdatasync` of its
//!   data file and `fsync` of every blob file it created and of the blob directory.
//!
//! Run: `cargo bench -p kairan-node --bench store_commit -- --warm-up-time 1 --measurement-time 4`
//! (criterion's figure is the time of one commit of the group; throughput in deliveries/s).
//! The stores live in a temporary directory on the disk of `TMPDIR`; each measured sample
//! starts from a fresh store. Results: `docs/performance.md`, "Store commit".

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sled::Transactional;

use kairan_node::store::{DiskStore, Store, StoredDelivery, WriteBatch, WriteOp};
use kairan_protocol::{Digest, Timestamp};

/// A delivery-sized JSON body (~21 KB, the size of a real delivery after three hops with a
/// long advisory body).
fn delivery_body(n: u64) -> Bytes {
    let filler: String = (0..21_000).map(|i| char::from(b'a' + ((i as u64 * 7 + n) % 26) as u8)).collect();
    Bytes::from(format!(r#"{{"advisory":{{"payload":"{filler}","n":{n}}},"certs":[],"hops":[]}}"#))
}

fn record(n: u64, body: &Bytes) -> StoredDelivery {
    StoredDelivery {
        digest: Digest::of(&n.to_be_bytes()),
        origin: "mhlw".into(),
        seq: n,
        scope: "jp/13".into(),
        relay_seq: n,
        received_at: Timestamp::from_unix_ms(1_700_000_000_000),
        delivery: body.clone(),
    }
}

fn batch(from: u64, group: u64, body: &Bytes) -> WriteBatch {
    let mut ops: Vec<WriteOp> = (from..from + group).map(|n| WriteOp::Accepted(record(n, body))).collect();
    // What a relay's commit carries besides: the published cursor rides along.
    ops.push(WriteOp::Cursor(kairan_node::store::PUBLISHED_CURSOR, from));
    WriteBatch { ops }
}

/// The store before the segment log, for comparison: deliveries as JSON values in sled.
struct SledOnly {
    db: sled::Db,
    deliveries: sled::Tree,
    origin_index: sled::Tree,
    output_log: sled::Tree,
    meta: sled::Tree,
    /// `Some`: also sync what sled leaves unsynced (its data file, new blob files).
    sync: Option<(File, HashSet<std::path::PathBuf>)>,
}

impl SledOnly {
    fn open(dir: &Path, fdatasync: bool) -> Self {
        let db = sled::Config::new().path(dir).flush_every_ms(None).open().expect("sled opens");
        let tree = |name: &str| db.open_tree(name).expect("tree");
        let sync = fdatasync.then(|| (File::open(dir.join("db")).expect("sled data file"), HashSet::new()));
        Self {
            deliveries: tree("deliveries"),
            origin_index: tree("origin_index"),
            output_log: tree("output_log"),
            meta: tree("meta"),
            db,
            sync,
        }
    }

    fn commit(&mut self, dir: &Path, batch: &WriteBatch) {
        for op in &batch.ops {
            match op {
                WriteOp::Accepted(record) => {
                    let value = serde_json::to_vec(record).expect("json");
                    let digest = *record.digest.as_bytes();
                    let mut index_key = record.origin.as_bytes().to_vec();
                    index_key.push(0);
                    index_key.extend_from_slice(&record.seq.to_be_bytes());
                    let log_key = record.relay_seq.to_be_bytes();
                    (&self.deliveries, &self.origin_index, &self.output_log)
                        .transaction(|(deliveries, origin_index, output_log)| {
                            deliveries.insert(&digest[..], value.as_slice())?;
                            origin_index.insert(index_key.as_slice(), &digest[..])?;
                            output_log.insert(&log_key[..], &digest[..])?;
                            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                        })
                        .expect("transaction");
                }
                WriteOp::Cursor(name, value) => {
                    self.meta.insert(format!("cursor/{name}"), &value.to_be_bytes()).expect("cursor");
                }
                _ => {}
            }
        }
        self.db.flush().expect("flush");
        if let Some((data, synced)) = &mut self.sync {
            data.sync_data().expect("fdatasync");
            let blobs = dir.join("blobs");
            let mut new_blobs = false;
            for entry in std::fs::read_dir(&blobs).expect("blobs") {
                let path = entry.expect("entry").path();
                if synced.insert(path.clone()) {
                    // A blob removed since the listing was garbage-collected: nothing to sync.
                    if let Ok(file) = File::open(&path) {
                        file.sync_all().expect("fsync blob");
                        new_blobs = true;
                    }
                }
            }
            if new_blobs {
                File::open(&blobs).and_then(|d| d.sync_all()).expect("fsync blob dir");
            }
        }
    }
}

/// Times `iters` commits of `group` deliveries into a fresh store made by `open`.
fn time_commits(group: u64, iters: u64, body: &Bytes, mut commit: impl FnMut(&WriteBatch)) -> Duration {
    let batches: Vec<WriteBatch> = (0..iters).map(|i| batch(1 + i * group, group, body)).collect();
    let started = Instant::now();
    for batch in &batches {
        commit(batch);
    }
    started.elapsed()
}

fn store_commit(c: &mut Criterion) {
    let body = delivery_body(1);
    assert!(body.len() > 21_000);
    let mut group_bench = c.benchmark_group("store_commit");
    group_bench.sample_size(10);
    for group in [1u64, 16, 128] {
        group_bench.throughput(Throughput::Elements(group));
        group_bench.bench_with_input(BenchmarkId::new("disk_store", group), &group, |b, &group| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = DiskStore::open(dir.path()).expect("open");
                time_commits(group, iters, &body, |batch| store.commit(batch).expect("commit"))
            })
        });
        for (name, fdatasync) in [("sled_only", false), ("sled_fdatasync", true)] {
            group_bench.bench_with_input(BenchmarkId::new(name, group), &group, |b, &group| {
                b.iter_custom(|iters| {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let mut store = SledOnly::open(dir.path(), fdatasync);
                    time_commits(group, iters, &body, |batch| store.commit(dir.path(), batch))
                })
            });
        }
    }
    group_bench.finish();
}

criterion_group!(benches, store_commit);
criterion_main!(benches);
