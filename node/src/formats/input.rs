//! What `kairan advisory export` reads: a signed advisory envelope, a delivery, or an
//! authoring file (TOML), recognised by content.
//!
//! An envelope's payload is decoded and validated but its signature is **not** verified here
//! (export has no trust anchors); `kairan verify` does that. The digest of a signed input is
//! the digest of its exact payload bytes; for an authoring file it is the digest of the
//! payload `kairan advisory sign` would produce for it (the compact JSON of the advisory).

use kairan_protocol::advisory::Advisory;
use kairan_protocol::envelope::ADVISORY_TYPE;
use kairan_protocol::{Delivery, Digest, Envelope, Timestamp};

use super::FormatError;
use crate::draft::AdvisoryDraft;

/// An advisory read from an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The advisory, validated.
    pub advisory: Advisory,
    /// Its digest (see the module documentation).
    pub digest: Digest,
    /// Whether it came from a signed envelope (or delivery) rather than an authoring file.
    pub signed: bool,
}

/// Reads `bytes` as an envelope, a delivery or an authoring file; `now` fills a missing
/// `issued_at` of an authoring file.
pub fn load(bytes: &[u8], now: Timestamp) -> Result<Loaded, FormatError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| FormatError::new("input", "file", format!("not UTF-8: {e}")))?;
    if !text.trim_start().starts_with('{') {
        return from_draft(text, now);
    }
    let probe: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| FormatError::new("input", "file", format!("not a JSON object: {e}")))?;
    if probe.contains_key("advisory") {
        let delivery =
            Delivery::from_json(bytes).map_err(|e| FormatError::new("input", "delivery", e.to_string()))?;
        from_envelope(&delivery.advisory, "delivery.advisory")
    } else if probe.contains_key("payload") {
        let envelope =
            Envelope::from_json(bytes).map_err(|e| FormatError::new("input", "envelope", e.to_string()))?;
        from_envelope(&envelope, "envelope")
    } else {
        Err(FormatError::new(
            "input",
            "file",
            "JSON that is neither a DSSE envelope (\"payload\") nor a delivery (\"advisory\")",
        ))
    }
}

fn from_envelope(envelope: &Envelope, field: &str) -> Result<Loaded, FormatError> {
    if envelope.payload_type != ADVISORY_TYPE {
        return Err(FormatError::new(
            "input",
            format!("{field}.payloadType"),
            format!("{:?} is not {ADVISORY_TYPE}", envelope.payload_type),
        ));
    }
    let advisory: Advisory = serde_json::from_slice(&envelope.payload)
        .map_err(|e| FormatError::new("input", format!("{field}.payload"), e.to_string()))?;
    advisory.validate().map_err(|e| FormatError::new("input", format!("{field}.payload"), e.to_string()))?;
    Ok(Loaded { advisory, digest: Digest::of(&envelope.payload), signed: true })
}

fn from_draft(text: &str, now: Timestamp) -> Result<Loaded, FormatError> {
    let advisory = AdvisoryDraft::parse(text)
        .and_then(|draft| draft.into_advisory(now, None))
        .map_err(|e| FormatError::new("input", "authoring file", e))?;
    let digest = Digest::of(&advisory.to_payload());
    Ok(Loaded { advisory, digest, signed: false })
}

#[cfg(test)]
mod tests {
    use kairan_protocol::fixtures;

    use super::*;
    use crate::draft::SAMPLES;

    const NOW: Timestamp = Timestamp::from_unix_ms(1_638_349_200_000);

    #[test]
    fn envelope_delivery_and_draft_agree() {
        let draft = load(SAMPLES[0].1.as_bytes(), NOW).expect("draft");
        assert!(!draft.signed);
        let key = fixtures::key("mhlw");
        let envelope = Envelope::sign(ADVISORY_TYPE, draft.advisory.to_payload(), &[&key]);
        let signed = load(&envelope.to_json(), NOW).expect("envelope");
        assert_eq!(
            (signed.advisory.clone(), signed.digest, signed.signed),
            (draft.advisory.clone(), draft.digest, true)
        );
        let delivery = Delivery { advisory: envelope, certs: Vec::new(), hops: Vec::new() };
        let delivered = load(&delivery.to_json(), NOW).expect("delivery");
        assert_eq!(delivered, signed);
    }

    #[test]
    fn wrong_payload_type_is_named() {
        let key = fixtures::key("mhlw");
        let envelope = Envelope::sign("application/vnd.kairan.cert+json", b"{}".to_vec(), &[&key]);
        let err = load(&envelope.to_json(), NOW).expect_err("refused");
        assert_eq!(err.field, "envelope.payloadType");
    }

    #[test]
    fn other_json_is_refused() {
        let err = load(br#"{"document": {}}"#, NOW).expect_err("refused");
        assert!(err.reason.contains("neither"), "{err}");
        let err = load(b"origin = ", NOW).expect_err("refused");
        assert_eq!(err.field, "authoring file");
    }
}
