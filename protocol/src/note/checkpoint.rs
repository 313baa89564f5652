//! Transparency-log checkpoints (c2sp.org/tlog-checkpoint) and their verification with
//! cosignatures (c2sp.org/tlog-cosignature).
//!
//! A checkpoint is a signed note whose text is the origin line, the tree size in decimal
//! (no leading zeros), the root hash in base64, and optional non-empty extension lines.
//! kairan requires the log's key name to equal the origin (the spec says SHOULD).

use super::{Note, NoteVerification, NoteVerifier, SignatureType};
use crate::error::{Error, Result};
use crate::keys::SecretKey;
use crate::time::Timestamp;
use crate::tlog::{Hash, empty_root};
use crate::verified::{Verifiable, Verified};

/// The body of a checkpoint: a log's tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity (and, in kairan, its key name).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Merkle tree hash of the leaves (RFC 9162).
    pub root: Hash,
    /// Extension lines (opaque, non-empty; their use is not recommended).
    pub extensions: Vec<String>,
}

fn malformed(reason: String) -> Error {
    Error::MalformedCheckpoint(reason)
}

/// A line of checkpoint text: non-empty, no newline, no control character.
fn check_line(what: &str, line: &str) -> Result<()> {
    if line.is_empty() {
        return Err(malformed(format!("empty {what} line")));
    }
    if line.chars().any(|c| c < ' ') {
        return Err(malformed(format!("{what} line contains a control character or newline")));
    }
    Ok(())
}

impl Checkpoint {
    /// The checkpoint of a tree of `size` leaves with root `root`, without extensions.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self { origin: origin.into(), size, root, extensions: Vec::new() }
    }

    /// Parses checkpoint text (a note's text, final newline included), strictly: at least
    /// three lines, a non-empty origin, a size in canonical decimal that fits in 64 bits, a
    /// root of 32 bytes in canonical base64, non-empty extension lines; a tree of size 0 must
    /// have the empty tree's root.
    pub fn parse(text: &str) -> Result<Self> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(malformed("the text does not end with a newline".into()));
        };
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(malformed(format!("{} lines; a checkpoint has at least 3", lines.len())));
        };
        check_line("origin", origin)?;
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (*size == "0" || !size.starts_with('0'));
        let size = match size.parse::<u64>() {
            Ok(value) if canonical => value,
            _ => {
                return Err(malformed(format!(
                    "tree size {size:?} is not a decimal number below 2^64 without leading zeros"
                )));
            }
        };
        let Some(root) = Hash::from_base64(root) else {
            return Err(malformed(format!("root hash {root:?} is not 32 bytes of canonical base64")));
        };
        if size == 0 && root != empty_root() {
            return Err(malformed(format!(
                "a tree of size 0 has root {}, not {}",
                empty_root().to_base64(),
                root.to_base64()
            )));
        }
        for line in extensions {
            check_line("extension", line)?;
        }
        let extensions = extensions.iter().map(|line| (*line).to_owned()).collect();
        Ok(Self { origin: (*origin).to_owned(), size, root, extensions })
    }

    /// The checkpoint text: origin, size, base64 root and extension lines, each ending in a
    /// newline. Refused if the origin or an extension line is empty or holds a control
    /// character, or if a tree of size 0 does not have the empty tree's root.
    pub fn to_text(&self) -> Result<String> {
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, self.root.to_base64());
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        // Produce exactly what parsing accepts, and nothing that reads back differently.
        match Self::parse(&text) {
            Ok(parsed) if parsed == *self => Ok(text),
            Ok(_) => Err(malformed("the origin or an extension line holds a newline".into())),
            Err(error) => Err(error),
        }
    }

    /// The checkpoint as a note signed by the log key `key`, under the origin as key name.
    pub fn sign(&self, key: &SecretKey) -> Result<Note> {
        let mut note = Note::new(self.to_text()?)?;
        note.sign(&self.origin, key)?;
        Ok(note)
    }
}

/// A cosignature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The cosigner's key name.
    pub name: String,
    /// Its key id.
    pub key_id: u32,
    /// When it cosigned (POSIX seconds).
    pub timestamp: u64,
}

/// What [`open_checkpoint`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFacts {
    /// The checkpoint, signed by the log key.
    pub checkpoint: Checkpoint,
    /// The known cosigners whose cosignature verified, once each.
    pub cosignatures: Vec<Cosignature>,
}

/// A note becomes `Verified<Note>` only as a checkpoint, through [`open_checkpoint`].
impl Verifiable for Note {
    type Facts = CheckpointFacts;
}

/// Opens a checkpoint note: parses the note (bounded), verifies every signature by a known
/// key (`log` and `cosigners`, as [`Note::verify`]), requires the log's signature, only then
/// parses the checkpoint text and requires its origin to be the log's key name, and counts
/// distinct known cosigners, at least `quorum` of them. `log` must be a
/// [`SignatureType::Ed25519`] key and every cosigner a [`SignatureType::CosignatureV1`] key.
pub fn open_checkpoint(
    note: &[u8],
    log: &NoteVerifier,
    cosigners: &[NoteVerifier],
    quorum: usize,
    now: Timestamp,
) -> Result<Verified<Note>> {
    if log.kind() != SignatureType::Ed25519 {
        return Err(Error::MalformedVerifierKey(format!(
            "log key {} is not an Ed25519 (0x01) key",
            log.label()
        )));
    }
    if let Some(other) = cosigners.iter().find(|c| c.kind() != SignatureType::CosignatureV1) {
        return Err(Error::MalformedVerifierKey(format!(
            "cosigner key {} is not a cosignature/v1 (0x04) key",
            other.label()
        )));
    }
    let parsed = Note::parse(note)?;
    let known: Vec<NoteVerifier> = std::iter::once(log).chain(cosigners).cloned().collect();
    let verified = parsed.verify(&known, now)?;
    let is_log = |v: &NoteVerification| v.name == log.name() && v.key_id == log.key_id();
    if !verified.iter().any(is_log) {
        return Err(Error::UnverifiedNote(format!("no signature by the log key {}", log.label())));
    }
    let checkpoint = Checkpoint::parse(parsed.text())?;
    if checkpoint.origin != log.name() {
        return Err(malformed(format!(
            "origin {:?} is not the log's key name {:?}",
            checkpoint.origin,
            log.name()
        )));
    }
    let cosignatures: Vec<Cosignature> = verified
        .iter()
        .filter(|v| !is_log(v))
        .filter_map(|v| Some(Cosignature { name: v.name.clone(), key_id: v.key_id, timestamp: v.timestamp? }))
        .collect();
    if cosignatures.len() < quorum {
        return Err(Error::ThresholdNotMet {
            what: format!("cosignatures of checkpoint {} at size {}", checkpoint.origin, checkpoint.size),
            needed: quorum,
            found: cosignatures.len(),
        });
    }
    Ok(Verified::new(parsed, CheckpointFacts { checkpoint, cosignatures }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{FIXTURE_NOW, key};
    use crate::tlog::leaf_hash;

    const ORIGIN: &str = "kairan.example/test";

    fn setup() -> (SecretKey, SecretKey, NoteVerifier, NoteVerifier) {
        let (log_key, witness) = (key("log-test"), key("witness-1"));
        let log = NoteVerifier::new(ORIGIN, SignatureType::Ed25519, log_key.public().clone()).expect("vkey");
        let cosigner =
            NoteVerifier::new("w1", SignatureType::CosignatureV1, witness.public().clone()).expect("vkey");
        (log_key, witness, log, cosigner)
    }

    fn code<T>(result: Result<T>) -> &'static str {
        result.map(|_| ()).map_err(|e| e.code()).err().unwrap_or("accepted")
    }

    #[test]
    fn parse_is_strict() {
        let root = leaf_hash(b"").to_base64();
        let ok = Checkpoint::parse(&format!("o\n1\n{root}\next\n")).expect("valid");
        assert_eq!((ok.size, ok.extensions.as_slice()), (1, &["ext".to_owned()][..]));
        let empty = empty_root().to_base64();
        assert_eq!(Checkpoint::parse(&format!("o\n0\n{empty}\n")).map(|c| c.size), Ok(0));
        for text in [
            format!("o\n1\n{root}"),
            "o\n1\n".to_owned(),
            format!("\n1\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n1 \n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("o\n1\n{}\n", &root[..43]),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next\n\n"),
            format!("o\n0\n{root}\n"),
            format!("o\n\n1\n{root}\n"),
        ] {
            assert_eq!(code(Checkpoint::parse(&text)), "malformed_checkpoint", "{text:?}");
        }
        let bad = Checkpoint { extensions: vec!["a\nb".into()], ..Checkpoint::new("o", 1, leaf_hash(b"")) };
        assert_eq!(code(bad.to_text()), "malformed_checkpoint");
    }

    #[test]
    fn open_checks_log_origin_and_quorum() {
        let (log_key, witness, log, cosigner) = setup();
        let checkpoint = Checkpoint::new(ORIGIN, 1, leaf_hash(b""));
        let mut note = checkpoint.sign(&log_key).expect("signs");
        let now = FIXTURE_NOW;
        let opened =
            open_checkpoint(&note.to_bytes(), &log, std::slice::from_ref(&cosigner), 0, now).expect("opens");
        assert_eq!(opened.facts().checkpoint, checkpoint);
        assert_eq!(
            code(open_checkpoint(&note.to_bytes(), &log, std::slice::from_ref(&cosigner), 1, now)),
            "threshold_not_met"
        );
        note.cosign("w1", &witness, 1_638_349_200).expect("cosigns");
        let opened = open_checkpoint(&note.to_bytes(), &log, std::slice::from_ref(&cosigner), 1, now)
            .expect("cosigned");
        assert_eq!(opened.facts().cosignatures.len(), 1);
        assert_eq!(opened.facts().cosignatures[0].timestamp, 1_638_349_200);
        assert_eq!(opened.value(), &note);

        // Only the witness: not the log's signature.
        let mut only_witness = Note::new(note.text()).expect("text");
        only_witness.cosign("w1", &witness, 1_638_349_200).expect("cosigns");
        assert_eq!(
            code(open_checkpoint(&only_witness.to_bytes(), &log, std::slice::from_ref(&cosigner), 0, now)),
            "unverified_note"
        );
        // Another origin under the log's key.
        let other = Checkpoint::new("kairan.example/other", 1, leaf_hash(b""));
        let mut misnamed = Note::new(other.to_text().expect("text")).expect("note");
        misnamed.sign(ORIGIN, &log_key).expect("signs");
        assert_eq!(code(open_checkpoint(&misnamed.to_bytes(), &log, &[], 0, now)), "malformed_checkpoint");
        // Keys of the wrong type.
        assert_eq!(code(open_checkpoint(&note.to_bytes(), &cosigner, &[], 0, now)), "malformed_verifier_key");
        assert_eq!(
            code(open_checkpoint(&note.to_bytes(), &log, std::slice::from_ref(&log), 0, now)),
            "malformed_verifier_key"
        );
        // A tampered root: the log's signature fails.
        let tampered = note.to_string().replacen(&leaf_hash(b"").to_base64(), &empty_root().to_base64(), 1);
        assert_eq!(code(open_checkpoint(tampered.as_bytes(), &log, &[cosigner], 0, now)), "bad_signature");
    }
}
