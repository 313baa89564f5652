//! Golden vectors of transparency logs in `protocol/tests/vectors/`: the RFC 6962 reference
//! tree (tree heads, every inclusion and consistency proof) and a signed, cosigned checkpoint.
//!
//! `tlog_vectors_match_the_implementation` regenerates them and compares byte for byte
//! (`KAIRAN_BLESS=1` rewrites the files instead, as for `golden.rs`). The other tests check the
//! files *without* this crate's tree or note code: the tree heads and proofs published by the
//! RFC 6962 implementations (Certificate Transparency, Trillian / transparency-dev), the
//! recursive definitions of RFC 9162 written out here with `sha2`, the note syntax and key ids
//! by hand, and the signatures with `ed25519-dalek` directly. Then the crate's verifiers run on
//! the files, and refuse every one-byte corruption of the checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use kairan_protocol::fixtures::{self, FIXTURE_NOW, LOG_ORIGIN, RFC6962_LEAVES, WITNESS_NAME};
use kairan_protocol::note::{NoteVerifier, cosignature_message, open_checkpoint};
use kairan_protocol::tlog::{self, Hash, MemoryHashes};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

const FILES: [&str; 5] =
    ["tlog-rfc6962.json", "checkpoint.note", "log.vkey", "witness.vkey", "cosignature-message.txt"];

/// Tree heads for sizes 0 to 8, as published (certificate-transparency, trillian testonly).
const PUBLISHED_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// Inclusion proofs as published in transparency-dev/merkle `proof/verify_test.go`
/// (0-based leaf index, tree size, audit path).
const PUBLISHED_INCLUSION: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// Consistency proofs as published in the same file (old size, new size, proof).
const PUBLISHED_CONSISTENCY: [(u64, u64, &[&str]); 5] = [
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
];

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TreeVectors {
    /// The leaves (hex).
    leaves: Vec<String>,
    /// SHA-256(0x00 || leaf), hex.
    leaf_hashes: Vec<String>,
    /// `roots[n]` = MTH of the first `n` leaves, hex.
    roots: Vec<String>,
    /// Every `(index, size)` with `index < size ≤ 8`.
    inclusion: Vec<InclusionVector>,
    /// Every `(old, new)` with `0 ≤ old ≤ new ≤ 8`.
    consistency: Vec<ConsistencyVector>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionVector {
    index: u64,
    size: u64,
    proof: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyVector {
    old: u64,
    new: u64,
    proof: Vec<String>,
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_hex).collect()
}

fn generate() -> Vec<(&'static str, Vec<u8>)> {
    let mut store = MemoryHashes::new();
    let mut roots = vec![tlog::empty_root()];
    for leaf in RFC6962_LEAVES {
        store.append(tlog::leaf_hash(leaf)).expect("room");
        roots.push(store.root());
    }
    let (mut inclusion, mut consistency) = (Vec::new(), Vec::new());
    for size in 0..=8u64 {
        for index in 0..size {
            let proof = hexes(&tlog::prove_inclusion(&store, index, size).expect("inclusion"));
            inclusion.push(InclusionVector { index, size, proof });
        }
        for old in 0..=size {
            let proof = hexes(&tlog::prove_consistency(&store, old, size).expect("consistency"));
            consistency.push(ConsistencyVector { old, new: size, proof });
        }
    }
    let vectors = TreeVectors {
        leaves: RFC6962_LEAVES.iter().map(hex::encode).collect(),
        leaf_hashes: RFC6962_LEAVES.iter().map(|leaf| tlog::leaf_hash(leaf).to_hex()).collect(),
        roots: hexes(&roots),
        inclusion,
        consistency,
    };
    let mut json = serde_json::to_vec_pretty(&vectors).expect("serializes");
    json.push(b'\n');
    let note = fixtures::sample_checkpoint();
    let timestamp = u64::try_from(FIXTURE_NOW.unix_ms() / 1000).expect("positive");
    vec![
        ("tlog-rfc6962.json", json),
        ("checkpoint.note", note.to_bytes()),
        ("log.vkey", format!("{}\n", fixtures::log_verifier()).into_bytes()),
        ("witness.vkey", format!("{}\n", fixtures::witness_verifier()).into_bytes()),
        ("cosignature-message.txt", cosignature_message(note.text(), timestamp)),
    ]
}

static ON_DISK: LazyLock<BTreeMap<&'static str, Vec<u8>>> = LazyLock::new(|| {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("vectors");
    if std::env::var("KAIRAN_BLESS").is_ok_and(|v| v == "1") {
        for (name, bytes) in generate() {
            std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
    }
    FILES
        .iter()
        .map(|&name| {
            let bytes = std::fs::read(dir.join(name))
                .unwrap_or_else(|e| panic!("read {name}: {e} (generate the vectors with KAIRAN_BLESS=1)"));
            (name, bytes)
        })
        .collect()
});

fn file(name: &str) -> &'static [u8] {
    ON_DISK.get(name).unwrap_or_else(|| panic!("{name} is not a vector file"))
}

fn text(name: &str) -> &'static str {
    std::str::from_utf8(file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn tlog_vectors_match_the_implementation() {
    let generated = generate();
    assert_eq!(generated.iter().map(|(name, _)| *name).collect::<Vec<_>>(), FILES);
    for (name, bytes) in generated {
        assert!(
            file(name) == bytes.as_slice(),
            "{name} differs from the implementation (rerun with KAIRAN_BLESS=1 if the change is intended)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Independent checks: sha2, ed25519-dalek, base64, hex and serde_json only, until the crate's
// own verifiers run on the files at the end of each test.
// ---------------------------------------------------------------------------------------------

type H = [u8; 32];

fn sha256(parts: &[&[u8]]) -> H {
    let mut hasher = Sha256::new();
    parts.iter().for_each(|part| hasher.update(part));
    hasher.finalize().into()
}

/// MTH, PATH and SUBPROOF of RFC 9162 §2.1, written out from the RFC.
fn mth(d: &[H]) -> H {
    match d.len() {
        0 => sha256(&[]),
        1 => d[0],
        n => {
            let k = (1..n).map(|i| 1 << i).take_while(|&k| k < n).last().unwrap_or(1);
            sha256(&[&[1], &mth(&d[..k]), &mth(&d[k..])])
        }
    }
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn path(m: usize, d: &[H]) -> Vec<H> {
    if d.len() <= 1 {
        return vec![];
    }
    let k = split(d.len());
    if m < k {
        [path(m, &d[..k]), vec![mth(&d[k..])]].concat()
    } else {
        [path(m - k, &d[k..]), vec![mth(&d[..k])]].concat()
    }
}

fn subproof(m: usize, d: &[H], b: bool) -> Vec<H> {
    if m == d.len() {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = split(d.len());
    if m <= k {
        [subproof(m, &d[..k], b), vec![mth(&d[k..])]].concat()
    } else {
        [subproof(m - k, &d[k..], false), vec![mth(&d[..k])]].concat()
    }
}

fn unhex(list: &[String]) -> Vec<H> {
    list.iter().map(|h| hex::decode(h).expect("hex").try_into().expect("32 bytes")).collect()
}

fn tree() -> TreeVectors {
    serde_json::from_slice(file("tlog-rfc6962.json")).expect("tlog-rfc6962.json")
}

#[test]
fn tree_vectors_are_the_published_ones_and_the_rfc_definitions() {
    let tree = tree();
    let leaves: Vec<Vec<u8>> = tree.leaves.iter().map(|l| hex::decode(l).expect("hex")).collect();
    assert_eq!(leaves, RFC6962_LEAVES.map(<[u8]>::to_vec));
    let d: Vec<H> = leaves.iter().map(|l| sha256(&[&[0], l])).collect();
    assert_eq!(unhex(&tree.leaf_hashes), d);
    assert_eq!(tree.roots, PUBLISHED_ROOTS);
    for n in 0..=8 {
        assert_eq!(hex::encode(mth(&d[..n])), PUBLISHED_ROOTS[n], "MTH of {n} leaves");
    }
    assert_eq!(tree.inclusion.len(), 36);
    assert_eq!(tree.consistency.len(), 45);
    for v in &tree.inclusion {
        let (m, n) = (v.index as usize, v.size as usize);
        assert_eq!(unhex(&v.proof), path(m, &d[..n]), "PATH({m}, D[{n}])");
    }
    for v in &tree.consistency {
        let (m, n) = (v.old as usize, v.new as usize);
        let expected = if m == 0 || m == n { vec![] } else { subproof(m, &d[..n], true) };
        assert_eq!(unhex(&v.proof), expected, "PROOF({m}, D[{n}])");
    }
    for (index, size, proof) in PUBLISHED_INCLUSION {
        let v = tree.inclusion.iter().find(|v| (v.index, v.size) == (index, size)).expect("listed");
        assert_eq!(v.proof, proof, "published inclusion proof ({index}, {size})");
    }
    for (old, new, proof) in PUBLISHED_CONSISTENCY {
        let v = tree.consistency.iter().find(|v| (v.old, v.new) == (old, new)).expect("listed");
        assert_eq!(v.proof, proof, "published consistency proof ({old}, {new})");
    }
}

#[test]
fn tree_vectors_verify_with_this_crate_and_corruptions_do_not() {
    let tree = tree();
    let roots: Vec<Hash> = unhex(&tree.roots).into_iter().map(Hash).collect();
    let leaves: Vec<Hash> = unhex(&tree.leaf_hashes).into_iter().map(Hash).collect();
    for v in &tree.inclusion {
        let proof: Vec<Hash> = unhex(&v.proof).into_iter().map(Hash).collect();
        let (leaf, root) = (&leaves[v.index as usize], &roots[v.size as usize]);
        tlog::verify_inclusion(leaf, v.index, v.size, &proof, root).expect("verifies");
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i].0[0] ^= 8;
            assert!(tlog::verify_inclusion(leaf, v.index, v.size, &bad, root).is_err());
        }
        assert!(
            tlog::verify_inclusion(leaf, v.index, v.size, &[proof.clone(), vec![*root]].concat(), root)
                .is_err()
        );
        assert!(tlog::verify_inclusion(leaf, v.index ^ 1, v.size, &proof, root).is_err() || v.size == 1);
    }
    for v in &tree.consistency {
        let proof: Vec<Hash> = unhex(&v.proof).into_iter().map(Hash).collect();
        let (old, new) = (&roots[v.old as usize], &roots[v.new as usize]);
        tlog::verify_consistency(v.old, v.new, old, new, &proof).expect("verifies");
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i].0[0] ^= 16;
            assert!(tlog::verify_consistency(v.old, v.new, old, new, &bad).is_err());
        }
        assert!(
            tlog::verify_consistency(v.old, v.new, old, new, &[proof.clone(), vec![*new]].concat()).is_err()
        );
        if v.old != v.new {
            assert!(tlog::verify_consistency(v.old, v.new, new, old, &proof).is_err(), "swapped roots");
        }
    }
}

/// `(name, key id, type byte, public key)` of a verifier key file, parsed by hand.
fn vkey_by_hand(name: &str) -> (String, [u8; 4], u8, VerifyingKey) {
    let line = text(name).strip_suffix('\n').expect("ends with a newline");
    let mut parts = line.splitn(3, '+');
    let (key_name, id, material) =
        (parts.next().expect("name"), parts.next().expect("id"), parts.next().expect("key"));
    let material = STANDARD.decode(material).expect("base64");
    let key = VerifyingKey::from_bytes(&material[1..].try_into().expect("32 bytes")).expect("a point");
    let expected = sha256(&[key_name.as_bytes(), b"\n", &material[..1], key.as_bytes()]);
    assert_eq!(id, hex::encode(&expected[..4]), "{name}: key id = SHA-256(name || 0x0A || type || key)[:4]");
    (key_name.to_owned(), expected[..4].try_into().expect("4 bytes"), material[0], key)
}

#[test]
fn checkpoint_note_verifies_by_hand() {
    let note = text("checkpoint.note");
    let split = note.rfind("\n\n").expect("blank line");
    let (body, signatures) = (&note[..=split], &note[split + 2..]);
    let root = STANDARD.encode(hex::decode(PUBLISHED_ROOTS[8]).expect("hex"));
    assert_eq!(body, format!("{LOG_ORIGIN}\n8\n{root}\n"), "origin, size, base64 root of the reference tree");
    let (log_name, log_id, log_type, log_key) = vkey_by_hand("log.vkey");
    let (witness_name, witness_id, witness_type, witness_key) = vkey_by_hand("witness.vkey");
    assert_eq!((log_name.as_str(), log_type), (LOG_ORIGIN, 0x01));
    assert_eq!((witness_name.as_str(), witness_type), (WITNESS_NAME, 0x04));
    let seed = |label: &str| sha256(&[format!("kairan-fixture:{label}").as_bytes()]);
    assert_eq!(log_key, SigningKey::from_bytes(&seed("log-jp-13")).verifying_key());
    assert_eq!(witness_key, SigningKey::from_bytes(&seed("witness-1")).verifying_key());

    let lines: Vec<&str> = signatures.lines().collect();
    assert!(signatures.ends_with('\n'));
    assert_eq!(lines.len(), 2);
    let decode = |line: &str, name: &str| {
        let rest = line.strip_prefix("\u{2014} ").expect("em dash and space");
        let encoded = rest.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).expect("key name");
        STANDARD.decode(encoded).expect("base64")
    };
    let log_sig = decode(lines[0], LOG_ORIGIN);
    assert_eq!(log_sig.len(), 4 + 64);
    assert_eq!(log_sig[..4], log_id);
    let signature = Signature::from_slice(&log_sig[4..]).expect("64 bytes");
    log_key.verify_strict(body.as_bytes(), &signature).expect("the log signed the text");

    let cosig = decode(lines[1], WITNESS_NAME);
    assert_eq!(cosig.len(), 4 + 8 + 64);
    assert_eq!(cosig[..4], witness_id);
    let timestamp = u64::from_be_bytes(cosig[4..12].try_into().expect("8 bytes"));
    assert_eq!(timestamp, 1_638_349_200, "FIXTURE_NOW in seconds");
    let message = format!("cosignature/v1\ntime {timestamp}\n{body}");
    assert_eq!(text("cosignature-message.txt"), message);
    let signature = Signature::from_slice(&cosig[12..]).expect("64 bytes");
    witness_key.verify_strict(message.as_bytes(), &signature).expect("the witness cosigned");
}

#[test]
fn checkpoint_opens_with_this_crate_and_no_corruption_does() {
    let log = NoteVerifier::parse(text("log.vkey").trim_end()).expect("log vkey");
    let witness = NoteVerifier::parse(text("witness.vkey").trim_end()).expect("witness vkey");
    let cosigners = [witness];
    let bytes = file("checkpoint.note");
    let opened = open_checkpoint(bytes, &log, &cosigners, 1, FIXTURE_NOW).expect("opens");
    assert_eq!(opened.facts().checkpoint.size, 8);
    assert_eq!(opened.facts().checkpoint.root.to_hex(), PUBLISHED_ROOTS[8]);
    assert_eq!(opened.facts().cosignatures[0].timestamp, 1_638_349_200);
    for at in 0..bytes.len() {
        for flip in [0x01, 0x80] {
            let mut corrupted = bytes.to_vec();
            corrupted[at] ^= flip;
            assert!(
                open_checkpoint(&corrupted, &log, &cosigners, 1, FIXTURE_NOW).is_err(),
                "byte {at} ^ {flip:#04x} accepted"
            );
        }
    }
}
