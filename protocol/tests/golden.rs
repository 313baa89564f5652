//! Golden test vectors in `protocol/tests/vectors/`.
//!
//! `golden_vectors_match_the_implementation` regenerates every vector from the deterministic
//! fixtures and compares it byte for byte with the file. With `KAIRAN_BLESS=1` in the
//! environment it (re)writes the files instead; review the diff before committing it.
//!
//! `vectors_are_self_consistent` checks the files *without* this crate: it recomputes the
//! PAE from payload and type by hand, checks every Ed25519 signature with `ed25519-dalek`
//! directly, using only the public keys in `keys.json`, checks key ids and digests with
//! SHA-256, walks the hop chain, checks that the revocation piece's statement names its
//! certificate by digest and that its signer issued it, and that the signed catch-up page's
//! statement describes its page. That is what a third-party implementation has to do, so
//! the vectors are usable (and proven usable) on their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use kairan_protocol::acceptance::{Acceptance, AcceptanceMessage, verify_acceptance};
use kairan_protocol::envelope::{
    ACCEPTANCE_TYPE, ADVISORY_TYPE, CERT_TYPE, HEAD_TYPE, HOP_TYPE, REVOCATION_TYPE, SYNC_PAGE_TYPE, pae,
};
use kairan_protocol::fixtures::{self, FIXTURE_NOW, Hierarchy};
use kairan_protocol::head::{Head, HeadMessage, verify_head};
use kairan_protocol::sync::{SyncResponse, sign_page, verify_page};
use kairan_protocol::{
    Digest, Envelope, PublicKey, TrustAnchors, TrustAnchorsFile, TrustBundle, VerifyContext,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The fixture keys in the vectors, in the order `keys.json` lists them.
const LABELS: [&str; 7] =
    ["root-1", "root-2", "root-3", "origin-mhlw", "relay-jp", "relay-jp-13", "relay-jp-13-chuo"];

/// The vector files, in the order they are generated.
const FILES: [&str; 13] = [
    "keys.json",
    "trust.json",
    "advisory.payload.json",
    "advisory.pae.txt",
    "advisory.envelope.json",
    "certs.json",
    "delivery-2hops.json",
    "digest.txt",
    "revocation-piece.json",
    "sync-page.json",
    "sync-page-tlog.json",
    "acceptance.json",
    "head.json",
];

/// The signed catch-up page of the vectors: `jp-13` answers `jp-13-chuo` with the 2-hop
/// delivery, after 0, scanned up to 1 of 1.
fn sync_page(tree: &Hierarchy, delivery: kairan_protocol::Delivery) -> SyncResponse {
    let page = SyncResponse {
        after: 0,
        scanned_upto: 1,
        last_relay_seq: 1,
        deliveries: vec![delivery],
        ..Default::default()
    };
    sign_page(page, "jp-13-chuo", &tree.relays[1].key, &tree.relay_chain(1))
}

/// The same page answering a request with `"tlog": 0`: it also carries `jp-13`'s checkpoint
/// of its log of one leaf (the 2-hop delivery, the bytes of `delivery-2hops.json`), signed
/// with its relay key as `kairan.example/jp-13`, and the statement binds it.
fn sync_page_tlog(tree: &Hierarchy, delivery: kairan_protocol::Delivery) -> SyncResponse {
    let root = kairan_protocol::tlog::leaf_hash(&delivery.to_json());
    let note = kairan_protocol::note::Checkpoint::new("kairan.example/jp-13", 1, root)
        .sign(&tree.relays[1].key)
        .expect("signs");
    let page = SyncResponse {
        after: 0,
        scanned_upto: 1,
        last_relay_seq: 1,
        deliveries: vec![delivery],
        tlog: Some(kairan_protocol::sync::LogProof {
            checkpoint: String::from_utf8(note.to_bytes()).expect("a note is text"),
            from: 0,
            consistency: Vec::new(),
            inclusion: Vec::new(),
        }),
        ..Default::default()
    };
    sign_page(page, "jp-13-chuo", &tree.relays[1].key, &tree.relay_chain(1))
}

/// The national node `jp` accepting the sample advisory of origin `mhlw` at the fixtures' time.
fn acceptance(tree: &Hierarchy, digest: Digest) -> AcceptanceMessage {
    let statement = Acceptance { node: "jp".into(), origin: "mhlw".into(), digest, accepted_at: FIXTURE_NOW };
    statement.sign(&tree.relays[0].key, &tree.relay_chain(0))
}

/// The origin `mhlw`'s signed head of its chain of the sample advisory's scope, naming the
/// sample advisory (its seq 1), signed at the fixtures' time, valid 24 hours.
fn head(tree: &Hierarchy, advisory: &kairan_protocol::Advisory, digest: Digest) -> HeadMessage {
    let head = Head {
        origin: advisory.origin.clone(),
        scope: advisory.scope.clone(),
        seq: advisory.seq,
        digest: Some(digest),
        issued_at: FIXTURE_NOW,
        expires_at: FIXTURE_NOW.plus_secs(24 * 3600),
    };
    head.sign(&tree.origin_key, &tree.origin_cert)
}

/// One entry of `keys.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    /// The 32-byte Ed25519 seed (RFC 8032 secret key), hex.
    seed: String,
    /// The raw 32-byte public key, hex.
    public: String,
    /// Lowercase hex SHA-256 of the raw public key.
    keyid: String,
}

/// A JSON object that keeps its keys in the order given.
struct OrderedMap<'a, V>(&'a [(&'a str, V)]);

impl<V: Serialize> Serialize for OrderedMap<'_, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("vectors")
}

/// Pretty JSON with a final newline, for the files people read (keys, trust, certs).
fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("serializes");
    bytes.push(b'\n');
    bytes
}

/// Every vector, generated from the fixtures.
fn generate() -> Vec<(&'static str, Vec<u8>)> {
    let tree = Hierarchy::standard();
    let advisory = fixtures::sample_advisory("mhlw", 1, None);
    let envelope = tree.sign_advisory(&advisory);
    let payload = advisory.to_payload();
    assert_eq!(envelope.payload, payload);

    let keys: Vec<(&str, KeyEntry)> = LABELS
        .iter()
        .map(|&label| {
            let key = fixtures::key(label);
            let entry = KeyEntry {
                seed: hex::encode(fixtures::seed(label)),
                public: key.public().to_hex(),
                keyid: key.keyid().to_string(),
            };
            (label, entry)
        })
        .collect();

    let vectors = vec![
        ("keys.json", pretty(&OrderedMap(&keys))),
        ("trust.json", pretty(&tree.anchors.to_file())),
        ("advisory.payload.json", payload.clone()),
        ("advisory.pae.txt", pae(ADVISORY_TYPE, &payload)),
        ("advisory.envelope.json", envelope.to_json()),
        ("certs.json", pretty(&tree.delivery_certs())),
        ("delivery-2hops.json", tree.delivery(&advisory, 2).to_json()),
        ("digest.txt", format!("{}\n", Digest::of(&payload)).into_bytes()),
        (
            "revocation-piece.json",
            tree.relay_revocation(1, &tree.relays[2].cert, &[], FIXTURE_NOW, FIXTURE_NOW).to_json(),
        ),
        ("sync-page.json", sync_page(&tree, tree.delivery(&advisory, 2)).to_json()),
        ("sync-page-tlog.json", sync_page_tlog(&tree, tree.delivery(&advisory, 2)).to_json()),
        ("acceptance.json", acceptance(&tree, Digest::of(&payload)).to_json()),
        ("head.json", head(&tree, &advisory, Digest::of(&payload)).to_json()),
    ];
    let names: Vec<&str> = vectors.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, FILES);
    vectors
}

fn bless_requested() -> bool {
    std::env::var("KAIRAN_BLESS").is_ok_and(|v| v == "1")
}

/// The vector files as they are on disk, after (re)writing them first if blessing was asked
/// for. Initialised once, so the tests of this file never read a half-written file.
static ON_DISK: LazyLock<BTreeMap<&'static str, Vec<u8>>> = LazyLock::new(|| {
    let dir = vectors_dir();
    if bless_requested() {
        std::fs::create_dir_all(&dir).expect("create the vectors directory");
        for (name, bytes) in generate() {
            std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
        eprintln!("KAIRAN_BLESS=1: wrote {} vectors to {}", FILES.len(), dir.display());
    }
    FILES
        .iter()
        .map(|&name| {
            let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| {
                panic!("read {}: {e} (generate the vectors with KAIRAN_BLESS=1)", dir.join(name).display())
            });
            (name, bytes)
        })
        .collect()
});

fn file(name: &str) -> &'static [u8] {
    ON_DISK.get(name).unwrap_or_else(|| panic!("{name} is not a vector file"))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(file(name)).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

#[test]
fn golden_vectors_match_the_implementation() {
    let mut mismatches = Vec::new();
    for (name, expected) in generate() {
        let found = file(name);
        if found != expected.as_slice() {
            let at = found
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(found.len().min(expected.len()));
            mismatches.push(format!(
                "{name}: file has {} bytes, implementation gives {}; first difference at byte {at}",
                found.len(),
                expected.len()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden vectors differ from the implementation (if the change of wire format is intended, \
         rerun with KAIRAN_BLESS=1 and review the diff):\n{}",
        mismatches.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Independent checks: only ed25519-dalek, sha2, base64, hex and serde_json below, until the
// final test, which feeds the files to this crate's verifier.
// ---------------------------------------------------------------------------------------------

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn keys() -> BTreeMap<String, KeyEntry> {
    serde_json::from_slice(file("keys.json")).expect("keys.json: label -> {seed, public, keyid}")
}

/// The DSSE v1 PAE, written out from the spec rather than calling the crate.
fn pae_by_hand(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

fn str_field<'v>(value: &'v Value, field: &str) -> &'v str {
    value[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {value}"))
}

/// Checks a DSSE envelope (as JSON) by hand: every signature must be by a key of `keys`
/// (looked up by keyid) and verify strictly over the PAE. Returns the payload and the labels
/// of the signers.
fn check_envelope(
    envelope: &Value,
    expected_type: &str,
    keys: &BTreeMap<String, KeyEntry>,
) -> (Vec<u8>, Vec<String>) {
    let object = envelope.as_object().expect("an envelope is an object");
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["payload", "payloadType", "signatures"]);
    let payload_type = str_field(envelope, "payloadType");
    assert_eq!(payload_type, expected_type);
    let payload = STANDARD.decode(str_field(envelope, "payload")).expect("payload is standard base64");
    let message = pae_by_hand(payload_type, &payload);
    let signatures = envelope["signatures"].as_array().expect("signatures is an array");
    assert!(!signatures.is_empty(), "unsigned envelope");
    let mut signers = Vec::new();
    for signature in signatures {
        let keyid = str_field(signature, "keyid");
        let (label, entry) = keys
            .iter()
            .find(|(_, entry)| entry.keyid == keyid)
            .unwrap_or_else(|| panic!("keyid {keyid} is not in keys.json"));
        let public: [u8; 32] = hex::decode(&entry.public).expect("hex").try_into().expect("32 bytes");
        let key = VerifyingKey::from_bytes(&public).expect("a curve point");
        let sig = STANDARD.decode(str_field(signature, "sig")).expect("sig is standard base64");
        let sig = Signature::from_slice(&sig).expect("64-byte signature");
        key.verify_strict(&message, &sig).unwrap_or_else(|e| panic!("signature by {label} fails: {e}"));
        signers.push(label.clone());
    }
    (payload, signers)
}

#[test]
fn keys_are_derived_as_documented() {
    let keys = keys();
    let labels: Vec<&str> = keys.keys().map(String::as_str).collect();
    let mut expected = LABELS.to_vec();
    expected.sort_unstable();
    assert_eq!(labels, expected);
    // Listed in the documented order, too.
    let text = std::str::from_utf8(file("keys.json")).expect("UTF-8");
    let positions: Vec<usize> =
        LABELS.iter().map(|label| text.find(&format!("\"{label}\"")).expect("label present")).collect();
    assert!(positions.is_sorted(), "keys.json lists the keys in the order {LABELS:?}");
    for (label, entry) in &keys {
        // seed = SHA-256("kairan-fixture:" + label)
        assert_eq!(entry.seed, sha256_hex(format!("kairan-fixture:{label}").as_bytes()), "{label} seed");
        let seed: [u8; 32] = hex::decode(&entry.seed).expect("hex").try_into().expect("32 bytes");
        let public = SigningKey::from_bytes(&seed).verifying_key();
        assert_eq!(entry.public, hex::encode(public.as_bytes()), "{label} public key");
        assert!(!public.is_weak(), "{label} is weak");
        assert_eq!(entry.keyid, sha256_hex(public.as_bytes()), "{label} keyid = sha256(public key)");
        for hex_text in [&entry.seed, &entry.public, &entry.keyid] {
            assert!(hex_text.len() == 64 && hex_text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        }
    }
}

#[test]
fn trust_file_lists_the_root_keys() {
    let keys = keys();
    let trust = json("trust.json");
    assert_eq!(trust["threshold"], 2);
    let roots = trust["roots"].as_array().expect("roots");
    assert_eq!(roots.len(), 3);
    for (index, root) in roots.iter().enumerate() {
        let id = format!("root-{}", index + 1);
        assert_eq!(str_field(root, "id"), id);
        assert_eq!(str_field(root, "key"), keys[&id].public);
    }
}

#[test]
fn advisory_envelope_verifies_by_hand() {
    let keys = keys();
    let envelope = json("advisory.envelope.json");
    let (payload, signers) = check_envelope(&envelope, ADVISORY_TYPE, &keys);
    assert_eq!(signers, ["origin-mhlw"]);
    assert_eq!(payload, file("advisory.payload.json"), "the envelope carries the payload file's bytes");
    assert_eq!(pae_by_hand(ADVISORY_TYPE, &payload), file("advisory.pae.txt"));
    let pae_text = std::str::from_utf8(file("advisory.pae.txt")).expect("UTF-8");
    assert!(pae_text.starts_with(&format!("DSSEv1 36 {ADVISORY_TYPE} {} {{", payload.len())), "{pae_text}");
    assert_eq!(
        std::str::from_utf8(file("digest.txt")).expect("UTF-8"),
        format!("sha256:{}\n", sha256_hex(&payload))
    );
    let advisory: Value = serde_json::from_slice(&payload).expect("the payload is JSON");
    assert_eq!(advisory["origin"], "mhlw");
    assert_eq!(advisory["seq"], 1);
    assert!(advisory.get("prev").is_none());
    assert_eq!(advisory["lang"], "ja");
    assert_eq!(advisory["title"]["ja"], "テスト注意喚起");
    // The payload is compact UTF-8 JSON: Japanese is not \u-escaped.
    assert!(std::str::from_utf8(&payload).expect("UTF-8").contains("テスト注意喚起"));
}

#[test]
fn certificates_verify_by_hand_up_to_the_roots() {
    let keys = keys();
    let trust = json("trust.json");
    let threshold = usize::try_from(trust["threshold"].as_u64().expect("threshold")).expect("small");
    let certs = json("certs.json");
    let certs = certs.as_array().expect("certs.json is an array");
    let mut subjects = Vec::new();
    for cert in certs {
        let (payload, signers) = check_envelope(cert, CERT_TYPE, &keys);
        let body: Value = serde_json::from_slice(&payload).expect("certificate payload is JSON");
        let (issuer, subject) = (str_field(&body, "issuer"), str_field(&body, "subject"));
        if issuer == "root" {
            let mut distinct = signers.clone();
            distinct.dedup();
            assert!(distinct.iter().all(|s| s.starts_with("root-")), "{subject}: {signers:?}");
            assert!(distinct.len() >= threshold, "{subject}: {signers:?}");
        } else {
            assert_eq!(signers, [format!("relay-{issuer}")], "{subject} is signed by its issuer");
            assert!(subjects.contains(&issuer.to_owned()), "{issuer} is certified before {subject}");
        }
        let label = if body["roles"] == serde_json::json!(["origin"]) {
            format!("origin-{subject}")
        } else {
            format!("relay-{subject}")
        };
        assert_eq!(str_field(&body, "key"), keys[&label].public, "{subject} certifies {label}");
        subjects.push(subject.to_owned());
    }
    assert_eq!(subjects, ["mhlw", "jp", "jp-13", "jp-13-chuo"]);
}

#[test]
fn two_hop_delivery_verifies_by_hand() {
    let keys = keys();
    let bytes = file("delivery-2hops.json");
    let delivery: Value = serde_json::from_slice(bytes).expect("delivery JSON");
    // The origin's envelope travels untouched: its exact bytes are inside the delivery.
    assert_eq!(delivery["advisory"], json("advisory.envelope.json"));
    let envelope_bytes = file("advisory.envelope.json");
    assert!(bytes.windows(envelope_bytes.len()).any(|w| w == envelope_bytes));
    let (payload, _) = check_envelope(&delivery["advisory"], ADVISORY_TYPE, &keys);
    let digest = format!("sha256:{}", sha256_hex(&payload));
    let all_certs = json("certs.json");
    for cert in delivery["certs"].as_array().expect("certs") {
        assert!(all_certs.as_array().expect("array").contains(cert), "every carried cert is in certs.json");
    }
    let hops = delivery["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 2);
    let (mut prev, mut upstream, mut after) = (digest.clone(), "mhlw".to_owned(), String::new());
    for (hop_envelope, relay) in hops.iter().zip(["jp", "jp-13"]) {
        let (hop_payload, signers) = check_envelope(hop_envelope, HOP_TYPE, &keys);
        assert_eq!(signers, [format!("relay-{relay}")]);
        let hop: Value = serde_json::from_slice(&hop_payload).expect("hop payload is JSON");
        assert_eq!(hop["advisory"], digest.as_str());
        assert_eq!(hop["relay"], relay);
        assert_eq!(hop["keyid"], keys[&format!("relay-{relay}")].keyid.as_str());
        assert_eq!(hop["upstream"], upstream.as_str());
        assert_eq!(hop["prev"], prev.as_str());
        // RFC 3339 UTC with milliseconds compares correctly as text.
        let (received, forwarded) = (str_field(&hop, "received_at"), str_field(&hop, "forwarded_at"));
        assert!(after.as_str() <= received && received <= forwarded, "{after} <= {received} <= {forwarded}");
        prev = format!("sha256:{}", sha256_hex(&hop_payload));
        upstream = relay.to_owned();
        after = forwarded.to_owned();
    }
}

#[test]
fn vector_files_verify_with_this_crate() {
    // Anchors loaded from trust.json, delivery verified by the crate's one entry point.
    let file_form: TrustAnchorsFile = serde_json::from_slice(file("trust.json")).expect("anchors file");
    let anchors = TrustAnchors::new(file_form).expect("valid anchors");
    let revocations = Default::default();
    let now = FIXTURE_NOW.plus_secs(60);
    let verified = kairan_protocol::verify_delivery(
        file("delivery-2hops.json"),
        VerifyContext { anchors: &anchors, revocations: &revocations, now },
    )
    .expect("the 2-hop vector verifies");
    assert_eq!(format!("{}\n", verified.digest()).as_bytes(), file("digest.txt"));
    assert_eq!(verified.hops().count(), 2);
    // The value docs/protocol.md §14 states for this vector.
    assert_eq!(
        verified.facts().chain_tip.to_string(),
        "sha256:3ce1227e0f7be27a08eb96b2b75679a8929bdfdf542c91670adb3a8f636c8043"
    );
    let envelope = Envelope::from_json(file("advisory.envelope.json")).expect("envelope");
    let origin = PublicKey::from_hex(&keys()["origin-mhlw"].public).expect("origin key");
    envelope.verify_by(ADVISORY_TYPE, "advisory", &origin).expect("verifies by the origin key");
    assert_eq!(pae(ADVISORY_TYPE, &envelope.payload), file("advisory.pae.txt"));
}

#[test]
fn revocation_piece_verifies_by_hand() {
    let keys = keys();
    let piece = json("revocation-piece.json");
    let object = piece.as_object().expect("a bundle is an object");
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["certs", "revocations"], "no rotations: the field is omitted");
    // The certificates: the revoked one and the revoker's chain, sorted by payload digest.
    let mut by_subject = BTreeMap::new();
    let mut digests = Vec::new();
    for cert in piece["certs"].as_array().expect("certs") {
        let (payload, signers) = check_envelope(cert, CERT_TYPE, &keys);
        let body: Value = serde_json::from_slice(&payload).expect("certificate payload is JSON");
        let digest = format!("sha256:{}", sha256_hex(&payload));
        digests.push(digest.clone());
        by_subject.insert(str_field(&body, "subject").to_owned(), (digest, body.clone(), signers));
    }
    assert!(digests.is_sorted(), "canonical order");
    assert_eq!(by_subject.keys().map(String::as_str).collect::<Vec<_>>(), ["jp", "jp-13", "jp-13-chuo"]);
    let revocations = piece["revocations"].as_array().expect("revocations");
    assert_eq!(revocations.len(), 1);
    let (payload, signers) = check_envelope(&revocations[0], REVOCATION_TYPE, &keys);
    assert_eq!(signers, ["relay-jp-13"]);
    let statement: Value = serde_json::from_slice(&payload).expect("revocation payload is JSON");
    let fields: Vec<&str> = statement.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(fields.len(), 7, "{fields:?}");
    // It names the district's certificate by digest; the revoker is the district's issuer,
    // whose own certificate chains to the roots (issuer = subject above, signed by that key).
    let (revoked_digest, revoked, _) = &by_subject["jp-13-chuo"];
    assert_eq!(statement["cert"], revoked_digest.as_str());
    assert_eq!(statement["subject"], "jp-13-chuo");
    assert_eq!(statement["issuer"], "jp-13");
    assert_eq!(revoked["issuer"], "jp-13");
    assert_eq!(by_subject["jp-13-chuo"].2, ["relay-jp-13"]);
    assert_eq!(by_subject["jp-13"].1["issuer"], "jp");
    assert_eq!(by_subject["jp-13"].2, ["relay-jp"]);
    assert_eq!(by_subject["jp"].1["issuer"], "root");
    assert_eq!(by_subject["jp"].2, ["root-1", "root-3"]);
    assert_eq!(statement["issued_at"], "2021-12-01T09:00:00.000Z");
    // And this crate accepts it, revoking exactly that certificate.
    let anchors =
        TrustAnchors::new(serde_json::from_slice(file("trust.json")).expect("anchors")).expect("valid");
    let bundle = TrustBundle::from_json(file("revocation-piece.json")).expect("bundle");
    let verified = bundle.verify(&anchors, FIXTURE_NOW.plus_secs(60)).expect("verifies");
    assert!(verified.refused().is_empty());
    let revoked: Vec<String> = verified.revoked().iter().map(|(d, _)| d.to_string()).collect();
    assert_eq!(revoked, std::slice::from_ref(revoked_digest));
    assert_eq!(verified.pieces()[0].to_json(), file("revocation-piece.json"), "a piece of itself");
}

#[test]
fn sync_page_verifies_by_hand() {
    let keys = keys();
    let page = json("sync-page.json");
    let (payload, signers) = check_envelope(&page["statement"], SYNC_PAGE_TYPE, &keys);
    assert_eq!(signers, ["relay-jp-13"]);
    let statement: Value = serde_json::from_slice(&payload).expect("statement payload is JSON");
    assert_eq!(statement["child"], "jp-13-chuo");
    for field in ["after", "scanned_upto", "last_relay_seq"] {
        assert_eq!(statement[field], page[field], "{field}");
    }
    // The digests of the page's deliveries: SHA-256 of each advisory payload, in order.
    let carried: Vec<String> = page["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| format!("sha256:{}", sha256_hex(&check_envelope(&d["advisory"], ADVISORY_TYPE, &keys).0)))
        .collect();
    assert_eq!(statement["deliveries"], serde_json::json!(carried));
    assert_eq!(page["deliveries"][0], json("delivery-2hops.json"), "the 2-hop vector, as jp-13 forwarded it");
    // The parent's chain: its certificate and the one above, as in certs.json.
    let all_certs = json("certs.json");
    let chain = page["certs"].as_array().expect("certs");
    assert_eq!(chain.len(), 2);
    assert!(chain.iter().all(|c| all_certs.as_array().expect("array").contains(c)));
    // And this crate accepts it from jp-13 for jp-13-chuo, and for nobody else.
    let anchors =
        TrustAnchors::new(serde_json::from_slice(file("trust.json")).expect("anchors")).expect("valid");
    let revocations = Default::default();
    let ctx = VerifyContext { anchors: &anchors, revocations: &revocations, now: FIXTURE_NOW.plus_secs(60) };
    verify_page(file("sync-page.json"), "jp-13", "jp-13-chuo", ctx).expect("verifies");
    assert!(verify_page(file("sync-page.json"), "jp-13", "jp-13-kyobashi", ctx).is_err());
    assert!(verify_page(file("sync-page.json"), "jp", "jp-13-chuo", ctx).is_err());
}

#[test]
fn sync_page_with_a_checkpoint_verifies_by_hand() {
    let keys = keys();
    let page = json("sync-page-tlog.json");
    let (payload, signers) = check_envelope(&page["statement"], SYNC_PAGE_TYPE, &keys);
    assert_eq!(signers, ["relay-jp-13"]);
    let statement: Value = serde_json::from_slice(&payload).expect("statement payload is JSON");
    // The statement binds the tlog object: SHA-256 of its compact JSON, fields in the order
    // checkpoint, from (consistency omitted when empty).
    let tlog = &page["tlog"];
    let checkpoint = tlog["checkpoint"].as_str().expect("checkpoint text");
    let compact = format!(
        r#"{{"checkpoint":{},"from":{}}}"#,
        serde_json::to_string(checkpoint).expect("string"),
        tlog["from"]
    );
    assert_eq!(tlog.as_object().map(|o| o.len()), Some(2), "an empty proof is omitted");
    assert_eq!(statement["tlog"], format!("sha256:{}", sha256_hex(compact.as_bytes())).as_str());
    // The checkpoint: text, empty line, one signature line by the relay key under the origin.
    let (text, signature_line) = checkpoint.split_once("\n\n").expect("text and signatures");
    let text = format!("{text}\n");
    assert_eq!(text.lines().collect::<Vec<_>>()[..2], ["kairan.example/jp-13", "1"]);
    // The root of a one-leaf log is the leaf hash: SHA-256(0x00 || the delivery bytes).
    let leaf = [&[0u8][..], file("delivery-2hops.json")].concat();
    assert_eq!(text.lines().nth(2), Some(STANDARD.encode(Sha256::digest(&leaf)).as_str()));
    let line = signature_line.strip_suffix('\n').expect("a final newline");
    let encoded = line.strip_prefix("\u{2014} kairan.example/jp-13 ").expect("signed under the origin");
    let bytes = STANDARD.decode(encoded).expect("base64");
    let public: [u8; 32] = hex::decode(&keys["relay-jp-13"].public).expect("hex").try_into().expect("32");
    let mut key_id = Sha256::new();
    key_id.update(b"kairan.example/jp-13\n\x01");
    key_id.update(public);
    assert_eq!(bytes[..4], key_id.finalize()[..4], "the key id of the relay key under that name");
    let signature = Signature::from_slice(&bytes[4..]).expect("64 bytes");
    VerifyingKey::from_bytes(&public)
        .expect("key")
        .verify_strict(text.as_bytes(), &signature)
        .expect("signed");
    // And this crate accepts it; a changed proof is refused.
    let anchors =
        TrustAnchors::new(serde_json::from_slice(file("trust.json")).expect("anchors")).expect("valid");
    let revocations = Default::default();
    let ctx = VerifyContext { anchors: &anchors, revocations: &revocations, now: FIXTURE_NOW.plus_secs(60) };
    verify_page(file("sync-page-tlog.json"), "jp-13", "jp-13-chuo", ctx).expect("verifies");
    let changed = String::from_utf8(file("sync-page-tlog.json").to_vec())
        .expect("utf-8")
        .replace(r#""from":0"#, r#""from":1"#);
    assert!(verify_page(changed.as_bytes(), "jp-13", "jp-13-chuo", ctx).is_err());
}

#[test]
fn acceptance_verifies_by_hand() {
    let keys = keys();
    let message = json("acceptance.json");
    let (payload, signers) = check_envelope(&message["statement"], ACCEPTANCE_TYPE, &keys);
    assert_eq!(signers, ["relay-jp"]);
    let statement: Value = serde_json::from_slice(&payload).expect("statement payload is JSON");
    assert_eq!(statement["node"], "jp");
    assert_eq!(statement["origin"], "mhlw");
    assert_eq!(
        statement["digest"].as_str(),
        Some(std::str::from_utf8(file("digest.txt")).expect("utf8").trim())
    );
    let chain = message["certs"].as_array().expect("certs");
    assert_eq!(chain.len(), 1, "the national node's root-issued certificate");
    let anchors =
        TrustAnchors::new(serde_json::from_slice(file("trust.json")).expect("anchors")).expect("valid");
    let revocations = Default::default();
    let ctx = VerifyContext { anchors: &anchors, revocations: &revocations, now: FIXTURE_NOW.plus_secs(60) };
    verify_acceptance(file("acceptance.json"), "jp", ctx).expect("verifies");
    assert!(verify_acceptance(file("acceptance.json"), "jp-13", ctx).is_err());
}

#[test]
fn head_verifies_by_hand_and_names_its_chain() {
    let keys = keys();
    let message = json("head.json");
    let (payload, signers) = check_envelope(&message["head"], HEAD_TYPE, &keys);
    assert_eq!(signers, ["origin-mhlw"]);
    let head: Value = serde_json::from_slice(&payload).expect("head payload is JSON");
    // The chain: origin and exact scope (`docs/protocol.md` §6.6, §11).
    assert_eq!(
        (head["origin"].as_str(), head["scope"].as_str(), head["seq"].as_u64()),
        (Some("mhlw"), Some("jp"), Some(1))
    );
    let advisory: Value = serde_json::from_slice(file("advisory.payload.json")).expect("advisory");
    assert_eq!(head["scope"], advisory["scope"], "the head of the sample advisory's chain");
    assert_eq!(head["digest"].as_str(), Some(std::str::from_utf8(file("digest.txt")).expect("utf8").trim()));
    let anchors =
        TrustAnchors::new(serde_json::from_slice(file("trust.json")).expect("anchors")).expect("valid");
    let revocations = Default::default();
    let ctx = VerifyContext { anchors: &anchors, revocations: &revocations, now: FIXTURE_NOW.plus_secs(60) };
    let verified = verify_head(file("head.json"), ctx).expect("verifies");
    assert_eq!(verified.facts().chain().to_string(), "mhlw@jp");
}
