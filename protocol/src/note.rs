//! C2SP signed notes (c2sp.org/signed-note): text signed by one or more keys, the envelope
//! of transparency-log checkpoints (c2sp.org/tlog-checkpoint) and of their cosignatures
//! (c2sp.org/tlog-cosignature).
//!
//! ```text
//! kairan.example/jp-13
//! 8
//! XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=
//!
//! — kairan.example/jp-13 <base64(key id || Ed25519 signature)>
//! — kairan.example/witness-1 <base64(key id || timestamp || Ed25519 signature)>
//! ```
//!
//! A note is UTF-8 without ASCII control characters other than the newline: the text (ending
//! in a newline), a blank line, and signature lines `— <key name> <base64>` (U+2014 EM DASH,
//! space). The text ends at the *last* blank line. Each signature decodes to a 4-byte
//! big-endian key id and the signature proper. The text means nothing until a signature by a
//! known key verifies: [`Note::parse`] only checks the syntax, [`Note::verify`] the signatures
//! (and [`checkpoint::open_checkpoint`] everything a checkpoint needs).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};
use crate::keys::SecretKey;
use crate::limits::{MAX_NOTE_BYTES, MAX_NOTE_SIGNATURES};
use crate::time::Timestamp;

pub mod checkpoint;
pub mod cosignature;
pub mod vkey;

pub use checkpoint::{Checkpoint, CheckpointFacts, Cosignature, open_checkpoint};
pub use cosignature::cosignature_message;
pub use vkey::{NoteVerifier, SignatureType, is_valid_key_name, key_id};

/// The start of every signature line: U+2014 EM DASH and a space.
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// A signature line of a note: key name, key id and signature bytes (after the key id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    name: String,
    key_id: u32,
    signature: Vec<u8>,
}

impl NoteSignature {
    /// A signature by the key `(name, key_id)`; `signature` excludes the key id.
    pub fn new(name: &str, key_id: u32, signature: Vec<u8>) -> Result<Self> {
        if !is_valid_key_name(name) {
            return Err(Error::MalformedNote(format!(
                "key name {name:?} is empty or contains white space, '+' or a control character"
            )));
        }
        if signature.is_empty() {
            return Err(Error::MalformedNote(format!("empty signature by {name}")));
        }
        Ok(Self { name: name.to_owned(), key_id, signature })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature bytes after the key id (for a cosignature: timestamp and signature).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    fn parse_line(line: &str, number: usize) -> Result<Self> {
        let bad = |reason: &str| Err(Error::MalformedNote(format!("signature line {number}: {reason}")));
        let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
            return bad("does not start with an em dash (U+2014) and a space");
        };
        let Some((name, encoded)) = rest.split_once(' ') else {
            return bad("no space between key name and signature");
        };
        if !is_valid_key_name(name) {
            return bad("the key name is empty or contains white space or '+'");
        }
        let Ok(bytes) = STANDARD.decode(encoded) else {
            return bad("the signature is not canonical standard base64");
        };
        match bytes.split_first_chunk::<4>() {
            Some((id, signature)) if !signature.is_empty() => {
                Self::new(name, u32::from_be_bytes(*id), signature.to_vec())
            }
            _ => bad("a signature has a 4-byte key id and at least one more byte"),
        }
    }
}

impl fmt::Display for NoteSignature {
    /// The signature line, with its final newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        writeln!(f, "{SIGNATURE_PREFIX}{} {}", self.name, STANDARD.encode(bytes))
    }
}

/// A signature of a note that verified, by the known key `(name, key_id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerification {
    /// Key name.
    pub name: String,
    /// Key id.
    pub key_id: u32,
    /// Signature type of the key.
    pub kind: SignatureType,
    /// The cosignature's timestamp (POSIX seconds), for [`SignatureType::CosignatureV1`].
    pub timestamp: Option<u64>,
}

/// A signed note: its text and signature lines, as parsed or being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// Checks note text (or a whole note): UTF-8 (given), no ASCII control character but `\n`.
fn check_characters(text: &str) -> Result<()> {
    match text.char_indices().find(|&(_, c)| c < ' ' && c != '\n') {
        Some((at, c)) => Err(Error::MalformedNote(format!("control character {:?} at byte {at}", c as u32))),
        None => Ok(()),
    }
}

impl Note {
    /// An unsigned note with `text`, which must end with a newline and contain no ASCII
    /// control character other than the newline.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        if text.len() > MAX_NOTE_BYTES {
            return Err(Error::Oversize { what: "note text", limit: MAX_NOTE_BYTES, actual: text.len() });
        }
        if !text.ends_with('\n') {
            return Err(Error::MalformedNote("the text does not end with a newline".into()));
        }
        check_characters(&text)?;
        Ok(Self { text, signatures: Vec::new() })
    }

    /// Parses a signed note, checking its syntax only (size first, then UTF-8, characters,
    /// the blank line, at most [`MAX_NOTE_SIGNATURES`] well-formed signature lines).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(Error::Oversize { what: "note", limit: MAX_NOTE_BYTES, actual: bytes.len() });
        }
        let Ok(message) = std::str::from_utf8(bytes) else {
            return Err(Error::MalformedNote("not UTF-8".into()));
        };
        check_characters(message)?;
        let Some(split) = message.rfind("\n\n") else {
            return Err(Error::MalformedNote("no blank line between the text and the signatures".into()));
        };
        let (text, lines) = (&message[..=split], &message[split + 2..]);
        if lines.is_empty() {
            return Err(Error::MalformedNote("no signature".into()));
        }
        if !lines.ends_with('\n') {
            return Err(Error::MalformedNote("the last signature line does not end with a newline".into()));
        }
        let count = lines.matches('\n').count();
        if count > MAX_NOTE_SIGNATURES {
            return Err(Error::Oversize {
                what: "note signatures",
                limit: MAX_NOTE_SIGNATURES,
                actual: count,
            });
        }
        let signatures = lines
            .split_terminator('\n')
            .enumerate()
            .map(|(index, line)| NoteSignature::parse_line(line, index + 1))
            .collect::<Result<_>>()?;
        Ok(Self { text: text.to_owned(), signatures })
    }

    /// The text (signed bytes of an Ed25519 signature), with its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature line at the end, removing any earlier one by the same `(name, key id)`.
    pub fn add_signature(&mut self, signature: NoteSignature) {
        self.signatures.retain(|s| (s.name(), s.key_id()) != (signature.name(), signature.key_id()));
        self.signatures.push(signature);
    }

    /// Signs the text with `key` under `name` (type `0x01`, Ed25519 over the text).
    pub fn sign(&mut self, name: &str, key: &SecretKey) -> Result<()> {
        let id = key_id(name, SignatureType::Ed25519, key.public());
        self.add_signature(NoteSignature::new(name, id, key.sign(self.text.as_bytes()).to_vec())?);
        Ok(())
    }

    /// The encoded note: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Checks the signatures against the `known` keys at `now`, as c2sp.org/signed-note
    /// requires: a line whose `(name, key id)` is no known key's is ignored; every line of a
    /// known key MUST verify, or the whole note is refused (`bad_signature`); a cosignature
    /// dated after `now` plus the clock skew is refused (`from_the_future`); and at least one
    /// known key must have signed (`unverified_note`). Returns the known keys that signed, once
    /// each, in the order of their first signature.
    pub fn verify(&self, known: &[NoteVerifier], now: Timestamp) -> Result<Vec<NoteVerification>> {
        let mut verified: Vec<NoteVerification> = Vec::new();
        for signature in &self.signatures {
            let mut matching =
                known.iter().filter(|k| k.name() == signature.name && k.key_id() == signature.key_id);
            let Some(key) = matching.next() else { continue };
            if matching.next().is_some() {
                return Err(Error::MalformedVerifierKey(format!("two known keys are {}", key.label())));
            }
            let timestamp = verify_signature(key, &self.text, &signature.signature, now)?;
            if !verified.iter().any(|v| v.name == key.name() && v.key_id == key.key_id()) {
                let (name, key_id, kind) = (key.name().to_owned(), key.key_id(), key.kind());
                verified.push(NoteVerification { name, key_id, kind, timestamp });
            }
        }
        if verified.is_empty() {
            let names: Vec<String> = known.iter().map(NoteVerifier::label).collect();
            return Err(Error::UnverifiedNote(format!("no valid signature by any of {}", names.join(", "))));
        }
        Ok(verified)
    }
}

impl fmt::Display for Note {
    /// The encoded note.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.text)?;
        self.signatures.iter().try_for_each(|signature| write!(f, "{signature}"))
    }
}

/// Verifies one signature by a known key; returns the cosignature timestamp if there is one.
fn verify_signature(key: &NoteVerifier, text: &str, signature: &[u8], now: Timestamp) -> Result<Option<u64>> {
    let bad = |what: &str| Error::BadSignature { what: what.to_owned(), keyid: key.label() };
    match key.kind() {
        SignatureType::Ed25519 => {
            if !key.public_key().verify_strict(text.as_bytes(), signature) {
                return Err(bad("note"));
            }
            Ok(None)
        }
        SignatureType::CosignatureV1 => cosignature::verify(key, text, signature, now).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::FIXTURE_NOW;

    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn vkey(text: &str) -> NoteVerifier {
        NoteVerifier::parse(text).expect("valid vkey")
    }

    fn code<T: fmt::Debug>(result: Result<T>) -> &'static str {
        result.map(|_| ()).map_err(|e| e.code()).err().unwrap_or("accepted")
    }

    #[test]
    fn go_examples_verify_as_go_says() {
        let (peter, enoch) = (vkey(PETER_VKEY), vkey(ENOCH_VKEY));
        let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let note = Note::parse(both.as_bytes()).expect("parses");
        assert_eq!(note.text(), TEXT);
        assert_eq!(note.to_string(), both, "round trip");
        let by_peter = note.verify(std::slice::from_ref(&peter), FIXTURE_NOW).expect("peter signed");
        assert_eq!(by_peter.len(), 1);
        assert_eq!((by_peter[0].name.as_str(), by_peter[0].key_id), ("PeterNeumann", 0xc74f20a3));
        assert_eq!(note.verify(&[peter.clone(), enoch.clone()], FIXTURE_NOW).expect("both").len(), 2);
        assert_eq!(code(note.verify(&[], FIXTURE_NOW)), "unverified_note");
        // The same key listed twice is ambiguous once a signature names it.
        assert_eq!(
            code(note.verify(&[enoch.clone(), peter.clone(), enoch], FIXTURE_NOW)),
            "malformed_verifier_key"
        );
        // A corrupted signature by a known key refuses the whole note.
        let corrupted = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        let note = Note::parse(corrupted.as_bytes()).expect("still well-formed");
        assert_eq!(code(note.verify(&[peter], FIXTURE_NOW)), "bad_signature");
    }

    #[test]
    fn c2sp_example_verifies() {
        let vkey = vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k");
        let message = "This is an example message.\n\n\u{2014} example.com/foo \
                       Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let note = Note::parse(message.as_bytes()).expect("parses");
        assert_eq!(note.text(), "This is an example message.\n");
        note.verify(std::slice::from_ref(&vkey), FIXTURE_NOW).expect("verifies");
        let tampered =
            Note::parse(message.replace("example message", "example massage").as_bytes()).expect("parses");
        assert_eq!(code(tampered.verify(&[vkey], FIXTURE_NOW)), "bad_signature");
    }

    #[test]
    fn malformed_notes_are_refused() {
        let bad = [
            TEXT.to_owned(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", PETER_SIG.trim_end()),
            format!("\u{1}{TEXT}\n{PETER_SIG}"),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!(
                "{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            ),
            format!("{TEXT}\n{}", PETER_SIG.replace('\u{2014}', "-")),
            format!("{TEXT}\n{}", PETER_SIG.replace("M=", "N=")),
            format!("{TEXT}\n{}", PETER_SIG.replace("M=", "M")),
            format!("{TEXT}\n\u{2014} PeterNeumann x08g\n"),
            format!("{TEXT}\n\u{2014} PeterNeumann\n"),
            format!("{TEXT}\r\n{PETER_SIG}"),
        ];
        for message in bad {
            assert_eq!(code(Note::parse(message.as_bytes())), "malformed_note", "{message:?}");
        }
        assert_eq!(code(Note::parse(b"\xff\n\n")), "malformed_note");
        let many = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_NOTE_SIGNATURES + 1));
        assert_eq!(code(Note::parse(many.as_bytes())), "oversize_input");
        assert!(Note::parse(format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_NOTE_SIGNATURES)).as_bytes()).is_ok());
        let huge = format!("{}\n\n{PETER_SIG}", "a".repeat(MAX_NOTE_BYTES));
        assert_eq!(code(Note::parse(huge.as_bytes())), "oversize_input");
        for text in ["", "no newline", "tab\there\n"] {
            assert_eq!(code(Note::new(text)), "malformed_note", "{text:?}");
        }
    }

    #[test]
    fn signing_reproduces_go_and_the_text_may_hold_blank_lines() {
        // Go's example signer key: PRIVATE+KEY+PeterNeumann+c74f20a3+base64(0x01 || seed).
        let material = STANDARD.decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz").expect("base64");
        let seed: [u8; 32] = material[1..].try_into().expect("32 bytes");
        let peter = SecretKey::from_seed(&seed).expect("seed");
        let mut note = Note::new(TEXT).expect("text");
        note.add_signature(NoteSignature::new("PeterNeumann", 0xc74f20a3, b"BADSIGN".to_vec()).expect("sig"));
        note.sign("PeterNeumann", &peter).expect("signs");
        assert_eq!(note.to_string(), format!("{TEXT}\n{PETER_SIG}"), "replaces the old signature");

        let mut spaced = Note::new("first\n\nsecond\n\n").expect("blank lines are allowed");
        spaced.sign("PeterNeumann", &peter).expect("signs");
        let parsed = Note::parse(&spaced.to_bytes()).expect("parses");
        assert_eq!(parsed.text(), "first\n\nsecond\n\n");
        parsed.verify(&[vkey(PETER_VKEY)], FIXTURE_NOW).expect("verifies");
    }
}
