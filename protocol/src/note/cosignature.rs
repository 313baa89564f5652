//! Timestamped Ed25519 checkpoint cosignatures (c2sp.org/tlog-cosignature, type `0x04`).
//!
//! A cosigner (a witness) states that, at `timestamp`, the checkpoint is the largest
//! consistent tree head it has seen for the log. Its signature line is
//! `— <name> base64(key id || timestamp (u64 big-endian) || Ed25519 signature)`, with key id
//! `SHA-256(name || 0x0A || 0x04 || public key)[:4]`, and the signature covers
//! [`cosignature_message`]: `"cosignature/v1\ntime <timestamp>\n"` and the checkpoint text.
//! The name is not signed, so a key must never serve two cosigner names.

use super::{Note, NoteSignature, NoteVerifier, SignatureType, key_id};
use crate::error::{Error, Result};
use crate::keys::SecretKey;
use crate::limits::MAX_CLOCK_SKEW_MS;
use crate::time::Timestamp;

/// The message an Ed25519 cosignature signs: `"cosignature/v1\ntime <timestamp>\n"` (the
/// timestamp in decimal without leading zeros) followed by the note text.
pub fn cosignature_message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

impl Note {
    /// Cosigns the text with `key` under `name` at `timestamp` (POSIX seconds, at most
    /// 2^63 - 1): type `0x04`, the signature bytes `timestamp (u64 BE) || Ed25519 signature`
    /// over [`cosignature_message`]. The text should be a checkpoint the cosigner has checked.
    pub fn cosign(&mut self, name: &str, key: &SecretKey, timestamp: u64) -> Result<()> {
        if i64::try_from(timestamp).is_err() {
            return Err(Error::MalformedNote(format!("cosignature timestamp {timestamp} is above 2^63 - 1")));
        }
        let id = key_id(name, SignatureType::CosignatureV1, key.public());
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&key.sign(&cosignature_message(self.text(), timestamp)));
        self.add_signature(NoteSignature::new(name, id, bytes)?);
        Ok(())
    }
}

/// Verifies the signature bytes of a cosignature by `key` over `text`, and that its timestamp
/// is at most 2^63 - 1 (else `bad_signature`) and not after `now` plus the clock skew (else
/// `from_the_future`). Returns the timestamp.
pub(crate) fn verify(key: &NoteVerifier, text: &str, signature: &[u8], now: Timestamp) -> Result<u64> {
    let bad = |what: &str| Error::BadSignature { what: what.to_owned(), keyid: key.label() };
    let Some((time, signature)) = signature.split_first_chunk::<8>() else {
        return Err(bad("cosignature (shorter than a timestamp)"));
    };
    let timestamp = u64::from_be_bytes(*time);
    let Ok(seconds) = i64::try_from(timestamp) else {
        return Err(bad("cosignature (timestamp above 2^63 - 1)"));
    };
    if !key.public_key().verify_strict(&cosignature_message(text, timestamp), signature) {
        return Err(bad("cosignature"));
    }
    let limit_ms = i128::from(now.unix_ms()) + i128::from(MAX_CLOCK_SKEW_MS);
    if i128::from(seconds) * 1000 > limit_ms {
        let at = Timestamp::from_unix_ms(seconds.saturating_mul(1000));
        return Err(Error::FromTheFuture { what: format!("cosignature by {}", key.label()), at, now });
    }
    Ok(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{FIXTURE_NOW, key};

    fn code<T>(result: Result<T>) -> &'static str {
        result.map(|_| ()).map_err(|e| e.code()).err().unwrap_or("accepted")
    }

    #[test]
    fn message_is_header_time_and_text() {
        assert_eq!(
            cosignature_message("example.com/log\n1\nroot\n", 1679315147),
            b"cosignature/v1\ntime 1679315147\nexample.com/log\n1\nroot\n"
        );
        assert!(cosignature_message("t\n", 0).starts_with(b"cosignature/v1\ntime 0\n"));
    }

    #[test]
    fn cosignatures_carry_a_checked_timestamp() {
        let witness = key("witness-1");
        let verifier = NoteVerifier::new("w.example", SignatureType::CosignatureV1, witness.public().clone())
            .expect("vkey");
        let now_secs = u64::try_from(FIXTURE_NOW.unix_ms() / 1000).expect("positive");
        let mut note = Note::new("origin\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n").expect("text");
        note.cosign("w.example", &witness, now_secs).expect("cosigns");
        let found = note.verify(std::slice::from_ref(&verifier), FIXTURE_NOW).expect("verifies");
        assert_eq!(found[0].timestamp, Some(now_secs));
        assert_eq!(found[0].kind, SignatureType::CosignatureV1);
        assert_eq!(note.signatures()[0].signature().len(), 8 + 64);
        // The same key as a plain Ed25519 note key has another key id: the line is ignored.
        let plain =
            NoteVerifier::new("w.example", SignatureType::Ed25519, witness.public().clone()).expect("vkey");
        assert_eq!(code(note.verify(&[plain], FIXTURE_NOW)), "unverified_note");

        // Five seconds of skew are tolerated, six are not.
        note.cosign("w.example", &witness, now_secs + 5).expect("cosigns");
        assert_eq!(note.signatures().len(), 1, "the earlier cosignature is replaced");
        note.verify(std::slice::from_ref(&verifier), FIXTURE_NOW).expect("within the skew");
        note.cosign("w.example", &witness, now_secs + 6).expect("cosigns");
        assert_eq!(code(note.verify(std::slice::from_ref(&verifier), FIXTURE_NOW)), "from_the_future");
        assert_eq!(code(note.cosign("w.example", &witness, 1 << 63)), "malformed_note");

        // A tampered timestamp, and one above 2^63 - 1, are refused.
        for first_byte in [0x00, 0x80] {
            let mut forged = note.signatures()[0].signature().to_vec();
            forged[0] = first_byte;
            forged[7] ^= 1;
            let mut forged_note = note.clone();
            forged_note
                .add_signature(NoteSignature::new("w.example", verifier.key_id(), forged).expect("sig"));
            assert_eq!(
                code(forged_note.verify(std::slice::from_ref(&verifier), FIXTURE_NOW)),
                "bad_signature"
            );
        }
        // Too short to hold a timestamp.
        let mut short = note.clone();
        short.add_signature(NoteSignature::new("w.example", verifier.key_id(), vec![0; 7]).expect("sig"));
        assert_eq!(code(short.verify(&[verifier], FIXTURE_NOW)), "bad_signature");
    }
}
