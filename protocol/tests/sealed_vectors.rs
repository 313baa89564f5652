//! Golden vectors of sealed advisories in `protocol/tests/vectors/`: the clinics' encryption
//! keys, the district's signed recipient directory and group-key message, a RED advisory
//! sealed to two clinics, an AMBER+STRICT one sealed to the district's group, and the
//! plaintext both decrypt to.
//!
//! `sealed_vectors_match_the_implementation` regenerates them from the deterministic fixtures
//! (seeded RNGs) and compares byte for byte (`KAIRAN_BLESS=1` rewrites the files instead, as
//! for `golden.rs`). The other tests check the files *without* this crate's sealed code: the
//! binding strings written out here, HPKE with the `hpke` crate directly, the content with
//! `chacha20poly1305` directly, signatures with `ed25519-dalek` from `keys.json`. Then this
//! crate's verifiers and openers run on the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use ed25519_dalek::{Signature, VerifyingKey};
use hpke::{Deserializable, Kem as _, OpModeR, Serializable};
use kairan_protocol::delivery::verify_parsed;
use kairan_protocol::directory::verify_directory;
use kairan_protocol::envelope::{ADVISORY_TYPE, GROUP_KEY_TYPE, RECIPIENTS_TYPE, pae};
use kairan_protocol::fixtures::sealed::{
    CLINICS, confidential_advisory, recipient, sealed_amber_strict, sealed_red, signed_directory,
    signed_group_key,
};
use kairan_protocol::fixtures::{self, Hierarchy};
use kairan_protocol::sealed::{
    Confidential, open_group_key, open_sealed, open_sealed_group, verify_group_key,
};
use kairan_protocol::{Delivery, Envelope, RevocationSet, Tlp, VerifyContext};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

type Kem = hpke::kem::X25519HkdfSha256;

const FILES: [&str; 6] = [
    "recipient-keys.json",
    "recipients.json",
    "group-key.json",
    "sealed-red.envelope.json",
    "sealed-amber-strict.envelope.json",
    "sealed.content.json",
];

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("vectors")
}

/// Every sealed vector, generated from the fixtures.
fn generate() -> Vec<(&'static str, Vec<u8>)> {
    let tree = Hierarchy::standard();
    let keys: BTreeMap<&str, Value> = CLINICS
        .iter()
        .map(|id| {
            let secret = recipient(id);
            let seed = hex::encode(fixtures::seed(&format!("clinic-{id}")));
            (*id, json!({"seed": seed, "public": secret.public().to_hex(), "kid": secret.public().kid()}))
        })
        .collect();
    let mut keys_json = serde_json::to_vec_pretty(&keys).expect("json");
    keys_json.push(b'\n');
    let content = serde_json::to_vec(&Confidential::of(&confidential_advisory(Tlp::Red, 1))).expect("json");
    let vectors = vec![
        ("recipient-keys.json", keys_json),
        ("recipients.json", signed_directory(&tree).to_json()),
        ("group-key.json", signed_group_key(&tree).to_json()),
        ("sealed-red.envelope.json", tree.sign_advisory(&sealed_red()).to_json()),
        ("sealed-amber-strict.envelope.json", tree.sign_advisory(&sealed_amber_strict()).to_json()),
        ("sealed.content.json", content),
    ];
    let names: Vec<&str> = vectors.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, FILES);
    vectors
}

static ON_DISK: LazyLock<BTreeMap<&'static str, Vec<u8>>> = LazyLock::new(|| {
    let dir = vectors_dir();
    if std::env::var("KAIRAN_BLESS").is_ok_and(|v| v == "1") {
        for (name, bytes) in generate() {
            std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
        eprintln!("KAIRAN_BLESS=1: wrote {} sealed vectors to {}", FILES.len(), dir.display());
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
    ON_DISK
        .get(name)
        .map(Vec::as_slice)
        .or_else(|| OTHER.get(name).map(Vec::as_slice))
        .expect("a vector file")
}

/// `keys.json` of `golden.rs` (the Ed25519 public keys).
static OTHER: LazyLock<BTreeMap<&'static str, Vec<u8>>> = LazyLock::new(|| {
    let bytes = std::fs::read(vectors_dir().join("keys.json")).expect("keys.json");
    BTreeMap::from([("keys.json", bytes)])
});

fn json_file(name: &str) -> Value {
    serde_json::from_slice(file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn sealed_vectors_match_the_implementation() {
    let mismatches: Vec<String> = generate()
        .into_iter()
        .filter(|(name, expected)| file(name) != expected.as_slice())
        .map(|(name, expected)| {
            format!("{name}: file has {} bytes, implementation gives {}", file(name).len(), expected.len())
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "sealed vectors differ from the implementation (if intended, rerun with KAIRAN_BLESS=1 and \
         review the diff):\n{}",
        mismatches.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Independent checks: hpke, chacha20poly1305, ed25519-dalek, sha2 and serde_json only.
// ---------------------------------------------------------------------------------------------

fn b64(value: &Value) -> Vec<u8> {
    STANDARD.decode(value.as_str().expect("a base64 string")).expect("standard base64")
}

/// Checks the one signature of an envelope by hand against the key labelled `signer` in
/// `keys.json`; returns the payload as JSON.
fn signed_by(envelope: &Value, payload_type: &str, signer: &str) -> Value {
    assert_eq!(envelope["payloadType"], payload_type);
    let payload = b64(&envelope["payload"]);
    let keys = json_file("keys.json");
    let public: [u8; 32] =
        hex::decode(keys[signer]["public"].as_str().expect("hex")).expect("hex").try_into().expect("32");
    let signatures = envelope["signatures"].as_array().expect("signatures");
    assert_eq!(signatures.len(), 1);
    assert_eq!(signatures[0]["keyid"], keys[signer]["keyid"]);
    let signature = Signature::from_slice(&b64(&signatures[0]["sig"])).expect("64 bytes");
    let message = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len());
    let message = [message.as_bytes(), &payload].concat();
    assert_eq!(message, pae(payload_type, &payload));
    VerifyingKey::from_bytes(&public).expect("key").verify_strict(&message, &signature).expect("signature");
    serde_json::from_slice(&payload).expect("payload JSON")
}

/// Clinic `id`'s HPKE private key, from `recipient-keys.json` (DeriveKeyPair of the seed).
fn clinic_key(id: &str) -> <Kem as hpke::Kem>::PrivateKey {
    let entry = &json_file("recipient-keys.json")[id];
    let seed = hex::decode(entry["seed"].as_str().expect("hex")).expect("hex");
    assert_eq!(hex::encode(&seed), hex::encode(Sha256::digest(format!("kairan-fixture:clinic-{id}"))));
    let (secret, public) = Kem::derive_keypair(&seed);
    assert_eq!(hex::encode(public.to_bytes()), entry["public"].as_str().expect("hex"));
    assert_eq!(&hex::encode(Sha256::digest(public.to_bytes()))[..16], entry["kid"].as_str().expect("kid"));
    secret
}

fn hpke_open(secret: &<Kem as hpke::Kem>::PrivateKey, enc: &[u8], info: &str, ct: &[u8]) -> Vec<u8> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).expect("enc");
    hpke::single_shot_open::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, Kem>(
        &OpModeR::Base,
        secret,
        &enc,
        info.as_bytes(),
        ct,
        b"",
    )
    .expect("HPKE opens")
}

fn decrypt_content(advisory: &Value, cek: &[u8]) -> Vec<u8> {
    let aad =
        format!(r#"["kairan-sealed-v1/content","mhlw",1,"mhlw-test-1","jp/13/chuo",{}]"#, advisory["tlp"]);
    ChaCha20Poly1305::new(cek.into())
        .decrypt(
            &[0u8; 12].into(),
            Payload { msg: &b64(&advisory["sealed"]["ciphertext"]), aad: aad.as_bytes() },
        )
        .expect("content decrypts")
}

#[test]
fn red_opens_by_hand_for_its_two_clinics() {
    let advisory = signed_by(&json_file("sealed-red.envelope.json"), ADVISORY_TYPE, "origin-mhlw");
    assert_eq!(advisory["tlp"], "RED");
    assert_eq!(advisory["title"], json!({}));
    assert_eq!(advisory["sealed"]["suite"], "kairan-sealed-v1");
    let slots = advisory["sealed"]["recipients"].as_array().expect("slots");
    assert_eq!(slots.len(), 2);
    for (slot, id) in slots.iter().zip(CLINICS) {
        assert_eq!(slot["to"], "clinic");
        assert_eq!(slot["id"], id);
        assert_eq!(slot["kid"], json_file("recipient-keys.json")[id]["kid"]);
        let info = format!(r#"["kairan-sealed-v1/clinic","mhlw",1,"mhlw-test-1","jp/13/chuo","{id}"]"#);
        let cek = hpke_open(&clinic_key(id), &b64(&slot["enc"]), &info, &b64(&slot["key"]));
        assert_eq!(decrypt_content(&advisory, &cek), file("sealed.content.json"));
    }
}

#[test]
fn amber_strict_opens_by_hand_through_the_group_key() {
    let group = signed_by(&json_file("group-key.json")["statement"], GROUP_KEY_TYPE, "relay-jp-13-chuo");
    assert_eq!(
        (group["relay"].as_str(), group["scope"].as_str(), group["epoch"].as_u64()),
        (Some("jp-13-chuo"), Some("jp/13/chuo"), Some(1))
    );
    let advisory = signed_by(&json_file("sealed-amber-strict.envelope.json"), ADVISORY_TYPE, "origin-mhlw");
    let slot = &advisory["sealed"]["recipients"][0];
    assert_eq!(
        (slot["to"].as_str(), slot["scope"].as_str(), slot["epoch"].as_u64()),
        (Some("group"), Some("jp/13/chuo"), Some(1))
    );
    for (member, id) in group["members"].as_array().expect("members").iter().zip(CLINICS) {
        assert_eq!(member["id"], id);
        let info = format!(r#"["kairan-group-key-v1","jp-13-chuo","jp/13/chuo",1,"{id}"]"#);
        let epoch_key = hpke_open(&clinic_key(id), &b64(&member["enc"]), &info, &b64(&member["key"]));
        let aad = r#"["kairan-sealed-v1/group","mhlw",1,"mhlw-test-1","jp/13/chuo","jp/13/chuo",1]"#;
        let nonce: [u8; 24] = b64(&slot["nonce"]).try_into().expect("24 bytes");
        let cek = XChaCha20Poly1305::new(epoch_key.as_slice().into())
            .decrypt(&nonce.into(), Payload { msg: &b64(&slot["key"]), aad: aad.as_bytes() })
            .expect("content key unwraps");
        assert_eq!(decrypt_content(&advisory, &cek), file("sealed.content.json"));
    }
}

#[test]
fn directory_lists_the_clinic_keys_by_hand() {
    let directory =
        signed_by(&json_file("recipients.json")["statement"], RECIPIENTS_TYPE, "relay-jp-13-chuo");
    let keys = json_file("recipient-keys.json");
    let entries = directory["recipients"].as_array().expect("entries");
    assert_eq!(entries.len(), CLINICS.len());
    for (entry, id) in entries.iter().zip(CLINICS) {
        assert_eq!(entry["id"], id);
        assert_eq!(entry["scope"], "jp/13/chuo");
        assert_eq!(entry["key"], keys[id]["public"]);
    }
    assert_eq!(
        (directory["version"].as_u64(), directory["part"].as_u64(), directory["parts"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
}

#[test]
fn the_crate_verifies_and_opens_the_files() {
    let tree = Hierarchy::standard();
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };
    let directory = verify_directory(file("recipients.json"), ctx).expect("directory verifies");
    assert_eq!(directory.key_of(CLINICS[0]), Some(recipient(CLINICS[0]).public()));
    let group = verify_group_key(file("group-key.json"), ctx).expect("group key verifies");
    let delivery = |name: &str| {
        let advisory = Envelope::from_json(file(name)).expect("envelope");
        verify_parsed(Delivery { advisory, certs: vec![tree.origin_cert.clone()], hops: vec![] }, ctx)
            .expect("verifies")
    };
    let expected: Confidential = serde_json::from_slice(file("sealed.content.json")).expect("content");
    let red = delivery("sealed-red.envelope.json");
    for id in &CLINICS[..2] {
        assert_eq!(open_sealed(&red, id, &recipient(id)).expect("opens"), expected);
    }
    assert_eq!(
        open_sealed(&red, CLINICS[2], &recipient(CLINICS[2])).map_err(|e| e.code()),
        Err("not_a_recipient")
    );
    let strict = delivery("sealed-amber-strict.envelope.json");
    for id in CLINICS {
        let key = open_group_key(&group, id, &recipient(id)).expect("unwraps");
        assert_eq!(open_sealed_group(&strict, &key).expect("opens"), expected);
    }
}
