//! Answers the machine's [`Query`]s from a [`Store`]: the one function both the daemon's
//! driver and the simulator call for [`super::Action::Read`].

use std::collections::VecDeque;

use super::io::{Query, ReadResult};
use super::serve::{SCAN_CHUNK, SCAN_LIMIT, build_page};
use crate::store::{Store, StoreError, TreeReader};
use kairan_protocol::sync::{Inclusion, LogProof};
use kairan_protocol::tlog::{Hash, prove_consistency, prove_inclusion};

/// Runs `query` against `store`.
pub fn run<S: Store>(store: &S, query: &Query) -> Result<ReadResult, StoreError> {
    match query {
        Query::Log { after, upto, limit } => {
            let mut entries = store.log_after(*after, *limit)?;
            entries.retain(|entry| entry.relay_seq <= *upto);
            Ok(ReadResult::Log(entries))
        }
        Query::Page { request, upto, tlog } => {
            // Read the log lazily, a chunk at a time: a page takes a few dozen entries, and
            // reading up to the scan limit for every request would starve the node when many
            // children catch up at once.
            let mut position = request.after;
            let mut scanned = 0usize;
            let mut chunk = VecDeque::new();
            let mut failure = None;
            let entries = std::iter::from_fn(|| {
                if chunk.is_empty() && failure.is_none() && scanned < SCAN_LIMIT && position < *upto {
                    match store.log_after(position, SCAN_CHUNK) {
                        Ok(read) => chunk.extend(read),
                        Err(error) => failure = Some(error),
                    }
                }
                let entry = chunk.pop_front().filter(|entry| entry.relay_seq <= *upto)?;
                position = entry.relay_seq;
                scanned += 1;
                Some(entry)
            });
            let mut page = build_page(request, entries, *upto);
            if let Some(error) = failure {
                return Err(error);
            }
            if let Some(log) = tlog {
                // No proof from past the checkpoint: the child holds a larger tree than this
                // node signed (it sees the smaller checkpoint and says so).
                let consistency = if log.from <= log.size {
                    prove_consistency(&TreeReader(store), log.from, log.size)?
                } else {
                    Vec::new()
                };
                let mut inclusion = Vec::new();
                for &index in log.prove.iter().filter(|&&index| index < log.size) {
                    let proof = prove_inclusion(&TreeReader(store), index, log.size)?;
                    inclusion.push(Inclusion { index, proof: proof.iter().map(Hash::to_base64).collect() });
                }
                page.tlog = Some(LogProof {
                    checkpoint: log.checkpoint.clone(),
                    from: log.from,
                    consistency: consistency.iter().map(Hash::to_base64).collect(),
                    inclusion,
                });
            }
            Ok(ReadResult::Page(Box::new(page)))
        }
    }
}
