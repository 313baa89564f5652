//! The verified inbox as the web pages read it: [`Inbox::read`] (every copy verified again),
//! kept until the copies directory changes. A change is seen from the directory listing —
//! names, sizes, modification times — so a copy written, replaced or tampered with on disk is
//! verified afresh on the next request; nothing is shown from the cache that was not verified
//! from the same bytes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use kairan_protocol::{Digest, TrustAnchors};

use crate::error::CliError;
use crate::inbox::listing::Inbox;
use crate::inbox::{Recipient, copies_dir};

/// The inbox at one version of the copies directory.
#[derive(Debug)]
pub struct Snapshot {
    /// Short hash of the directory listing: changes whenever a copy does.
    pub version: String,
    /// The verified inbox.
    pub inbox: Inbox,
}

/// Reads snapshots, re-verifying only when the directory changed.
#[derive(Debug)]
pub struct Reader {
    data_dir: PathBuf,
    anchors: TrustAnchors,
    recipient: Recipient,
    cached: Mutex<Option<Arc<Snapshot>>>,
}

impl Reader {
    /// A reader of `data_dir`'s copies.
    pub fn new(data_dir: PathBuf, anchors: TrustAnchors) -> Self {
        Reader { data_dir, anchors, recipient: Recipient::default(), cached: Mutex::new(None) }
    }

    /// This reader opening, for display, the sealed advisories `recipient`'s key opens (in
    /// memory: the cached snapshot is never written anywhere).
    pub fn for_recipient(mut self, recipient: Recipient) -> Self {
        self.recipient = recipient;
        self
    }

    /// The current snapshot (blocking: file I/O and signature checks).
    pub fn current(&self) -> Result<Arc<Snapshot>, CliError> {
        let version = self.version()?;
        let mut cached =
            self.cached.lock().map_err(|_| CliError::Failed("web inbox cache poisoned".into()))?;
        if let Some(snapshot) = cached.as_ref().filter(|s| s.version == version) {
            return Ok(Arc::clone(snapshot));
        }
        let inbox = Inbox::read_as(&self.data_dir, &self.anchors, &self.recipient)?;
        let snapshot = Arc::new(Snapshot { version, inbox });
        *cached = Some(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// The version of the copies directory as it is now.
    pub fn version(&self) -> Result<String, CliError> {
        let dir = copies_dir(&self.data_dir);
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok("empty".into()),
            Err(e) => return Err(CliError::io(&dir, e)),
        };
        let mut lines = Vec::new();
        for item in listing {
            let item = item.map_err(|e| CliError::io(&dir, e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") {
                continue;
            }
            let metadata = item.metadata().map_err(|e| CliError::io(&item.path(), e))?;
            let modified = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            lines.push(format!("{name} {} {modified}\n", metadata.len()));
        }
        lines.sort();
        Ok(Digest::of(lines.concat().as_bytes()).short())
    }

    /// The current snapshot, off the async runtime's worker threads.
    pub async fn load(self: &Arc<Self>) -> Result<Arc<Snapshot>, CliError> {
        let reader = Arc::clone(self);
        tokio::task::spawn_blocking(move || reader.current())
            .await
            .map_err(|e| CliError::Failed(format!("web inbox reader: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use kairan_protocol::fixtures::Hierarchy;

    use super::*;
    use crate::inbox::testing;

    #[test]
    fn re_reads_only_when_the_copies_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hierarchy = Hierarchy::standard();
        let reader = Reader::new(dir.path().to_owned(), hierarchy.anchors.clone());
        let empty = reader.current().expect("empty inbox");
        assert_eq!((empty.version.as_str(), empty.inbox.items.len()), ("empty", 0));
        let first = testing::store(
            &hierarchy,
            dir.path(),
            1,
            &testing::advisory(1, None, kairan_protocol::Kind::Alert, &[]),
        );
        let one = reader.current().expect("one");
        assert_eq!(one.inbox.items.len(), 1);
        assert!(Arc::ptr_eq(&one, &reader.current().expect("same")), "unchanged: cached");
        // Tampering on disk changes the listing: the copy is verified afresh and refused.
        testing::tamper(dir.path(), &first, |advisory| advisory.id = "MHLW-EVIL-001".into());
        let tampered = reader.current().expect("tampered");
        assert_ne!(tampered.version, one.version);
        assert_eq!((tampered.inbox.items.len(), tampered.inbox.refused.len()), (0, 1));
    }
}
