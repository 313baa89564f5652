//! Makes and verifies transparency-log checkpoints with `kairan-protocol`, for
//! `scripts/interop-note.sh`, which checks them with an independent implementation.
//!
//! ```text
//! checkpoint make DIR [LEAVES]     a log of LEAVES leaves (default 1000, at least 8): the 8
//!                                  RFC 6962 reference leaves, then "kairan leaf <i>"; writes
//!                                  DIR/leaves.hex, DIR/proofs.txt, DIR/checkpoint.note (signed
//!                                  by the fixture log key, cosigned by the fixture witness),
//!                                  DIR/log.vkey, DIR/witness.vkey; prints note and vkeys
//! checkpoint verify NOTE LOG_VKEY [COSIGNER_VKEY...]
//!                                  opens NOTE with the log key, requiring a cosignature by
//!                                  every cosigner given; exit status 1 if refused
//! ```
//!
//! `proofs.txt` lines: `root <size> <hex>`, `inclusion <index> <size> <proof>` and
//! `consistency <old> <new> <proof>`, a proof being comma-separated hex hashes (`-` if empty).
//! The keys are the public test fixtures: never use them for anything else.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use kairan_protocol::fixtures::{self, FIXTURE_NOW, RFC6962_LEAVES, WITNESS_NAME};
use kairan_protocol::note::{Checkpoint, NoteVerifier, open_checkpoint};
use kairan_protocol::tlog::{self, Hash, MemoryHashes};
use kairan_protocol::{Error, Timestamp};

type Outcome = Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["make", dir] => make(Path::new(dir), 1000),
        ["make", dir, leaves] => match leaves.parse() {
            Ok(count) if count >= 8 => make(Path::new(dir), count),
            _ => Err(format!("LEAVES must be a number of at least 8, not {leaves:?}")),
        },
        ["verify", note, log, cosigners @ ..] => verify(note, log, cosigners),
        _ => {
            Err("usage: checkpoint make DIR [LEAVES] | checkpoint verify NOTE LOG_VKEY [COSIGNER_VKEY...]"
                .into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn proof_text(proof: &[Hash]) -> String {
    if proof.is_empty() { "-".into() } else { proof.iter().map(Hash::to_hex).collect::<Vec<_>>().join(",") }
}

/// Tree sizes whose proofs are written: every size up to 40, then sizes around powers of two.
fn sizes(leaves: u64) -> Vec<u64> {
    let mut sizes: Vec<u64> = (1..=40).collect();
    for power in 6..=20 {
        let p = 1u64 << power;
        sizes.extend([p - 1, p, p + 1]);
    }
    sizes.extend([leaves / 3, leaves - 1, leaves]);
    sizes.retain(|&n| n >= 1 && n <= leaves);
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// All of `0..=n` for small trees; otherwise the edges, powers of two and every 13th.
fn points(n: u64) -> Vec<u64> {
    if n <= 40 {
        return (0..=n).collect();
    }
    let mut points: Vec<u64> = (0..=n).step_by(13).collect();
    points.extend([1, n / 2, n - 1, n]);
    points.extend((0..64).map(|p| 1u64 << p).filter(|&p| p <= n));
    points.sort_unstable();
    points.dedup();
    points
}

fn make(dir: &Path, leaves: u64) -> Outcome {
    let fail = |e: Error| e.to_string();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut store = MemoryHashes::new();
    let (mut leaves_hex, mut proofs) = (String::new(), String::new());
    for index in 0..leaves {
        let data = match RFC6962_LEAVES.get(index as usize) {
            Some(data) => data.to_vec(),
            None => format!("kairan leaf {index}").into_bytes(),
        };
        store.append(tlog::leaf_hash(&data)).map_err(fail)?;
        writeln!(leaves_hex, "{}", hex::encode(&data)).map_err(|e| e.to_string())?;
        writeln!(proofs, "root {} {}", index + 1, store.root()).map_err(|e| e.to_string())?;
    }
    for n in sizes(leaves) {
        for index in points(n).into_iter().filter(|&i| i < n) {
            let proof = tlog::prove_inclusion(&store, index, n).map_err(fail)?;
            writeln!(proofs, "inclusion {index} {n} {}", proof_text(&proof)).map_err(|e| e.to_string())?;
        }
        for old in points(n) {
            let proof = tlog::prove_consistency(&store, old, n).map_err(fail)?;
            writeln!(proofs, "consistency {old} {n} {}", proof_text(&proof)).map_err(|e| e.to_string())?;
        }
    }
    let log = fixtures::log_verifier();
    let checkpoint = Checkpoint::new(log.name(), store.size(), store.root());
    let mut note = checkpoint.sign(&fixtures::key("log-jp-13")).map_err(fail)?;
    let timestamp = u64::try_from(FIXTURE_NOW.unix_ms() / 1000).map_err(|e| e.to_string())?;
    note.cosign(WITNESS_NAME, &fixtures::key("witness-1"), timestamp).map_err(fail)?;
    let files = [
        ("leaves.hex", leaves_hex),
        ("proofs.txt", proofs),
        ("checkpoint.note", note.to_string()),
        ("log.vkey", format!("{log}\n")),
        ("witness.vkey", format!("{}\n", fixtures::witness_verifier())),
    ];
    for (name, content) in files {
        std::fs::write(dir.join(name), content).map_err(|e| format!("{name}: {e}"))?;
    }
    print!("{note}");
    println!("log vkey:     {log}");
    println!("witness vkey: {}", fixtures::witness_verifier());
    Ok(())
}

fn read_vkey(path: &str) -> Result<NoteVerifier, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    NoteVerifier::parse(text.trim_end_matches('\n')).map_err(|e| format!("{path}: {e}"))
}

fn verify(note: &str, log: &str, cosigners: &[&str]) -> Outcome {
    let bytes = std::fs::read(note).map_err(|e| format!("{note}: {e}"))?;
    let log = read_vkey(log)?;
    let cosigners = cosigners.iter().map(|path| read_vkey(path)).collect::<Result<Vec<_>, _>>()?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_millis();
    let now = Timestamp::from_unix_ms(i64::try_from(now_ms).map_err(|e| e.to_string())?);
    let opened = open_checkpoint(&bytes, &log, &cosigners, cosigners.len(), now)
        .map_err(|e| format!("refused ({}): {e}", e.code()))?;
    let facts = opened.facts();
    let cosigned: Vec<String> =
        facts.cosignatures.iter().map(|c| format!("{} at {}", c.name, c.timestamp)).collect();
    println!(
        "ok: {} size {} root {} cosigned by [{}]",
        facts.checkpoint.origin,
        facts.checkpoint.size,
        facts.checkpoint.root,
        cosigned.join(", ")
    );
    Ok(())
}
