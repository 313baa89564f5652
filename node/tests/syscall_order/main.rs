//! Durable before acknowledged, durable before forwarded — proven on the system calls of a
//! real relay process.
//!
//! A tree of real `kairan` processes (national → prefecture → district, embedded brokers) runs
//! with the prefecture under `strace -f`; an origin publishes advisories to the national; once
//! the district holds them all, the prefecture is stopped and its trace read ([`trace`]). Every
//! PUBACK the prefecture sent to the national's broker for a delivery, and every PUBLISH it
//! wrote carrying a delivery (to its own broker, from its broker to the district, in catch-up
//! pages), must come after an `fdatasync` of the segment file holding that delivery, begun
//! after the record was written. The parser's own tests run on a trace recorded from this test
//! (`fixtures/prefecture.strace`), as it was and with the order broken.
//!
//! Linux only; needs `strace` (Debian's). Without it the test is skipped with a message, or
//! fails when `KAIRAN_REQUIRE_STRACE=1` (as in `.ci/run`). `KAIRAN_SYSCALL_TRACE_KEEP=PATH`
//! keeps the trace.

#![cfg(target_os = "linux")]

#[allow(dead_code)] // shared with the crash harness; this test uses part of it
#[path = "../support/mod.rs"]
mod support;
mod trace;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kairan_node::publish::publish_acked;
use kairan_node::topics;
use kairan_protocol::envelope::ADVISORY_TYPE;
use kairan_protocol::{Delivery, Digest, Envelope, Scope, fixtures};

use support::files::{TreeFiles, TreeSpec};
use support::procs::Daemon;

const KAIRAN: &str = env!("CARGO_BIN_EXE_kairan");
/// Advisories published through the relay under test.
const ADVISORIES: usize = 24;
/// What strace records: the syncs, the writes to files and sockets, the reads from sockets.
const TRACED: &str = "trace=fdatasync,fsync,pwrite64,write,writev,sendto,sendmsg,recvfrom,read,readv,recvmsg";

/// The strace binary, or `None` (the test is skipped; `KAIRAN_REQUIRE_STRACE=1` fails it).
fn strace() -> Option<&'static str> {
    if Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success()) {
        return Some("strace");
    }
    assert!(
        std::env::var("KAIRAN_REQUIRE_STRACE").as_deref() != Ok("1"),
        "KAIRAN_REQUIRE_STRACE=1 but strace is not installed (apt-get install strace)"
    );
    eprintln!("\n*** SKIPPED: strace is not installed; the syscall-order durability test did not run ***\n");
    None
}

/// Advisories of the tree's origin, scoped to the prefecture (so it stores and forwards them).
fn signed(tree: &TreeFiles, count: usize) -> Vec<(Vec<u8>, Digest)> {
    let now = kairan_node::clock::now();
    let mut prev = None;
    (1..=count as u64)
        .map(|seq| {
            let mut advisory = fixtures::sample_advisory(&tree.origin.id, seq, prev);
            advisory.id = format!("SYSCALL-{seq:03}");
            advisory.scope = Scope::parse("jp/13").expect("scope");
            advisory.issued_at = now;
            advisory.expires_at = now.plus_secs(3600);
            let envelope = Envelope::sign(ADVISORY_TYPE, advisory.to_payload(), &[&tree.origin.key]);
            let digest = Digest::of(&envelope.payload);
            prev = Some(digest);
            let delivery =
                Delivery { advisory: envelope, certs: vec![tree.origin.cert.clone()], hops: vec![] };
            (delivery.to_json(), digest)
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The traced `kairan` process: strace's child.
fn traced_child(strace_pid: u32) -> u32 {
    let path = format!("/proc/{strace_pid}/task/{strace_pid}/children");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split_whitespace().next().and_then(|p| p.parse().ok()).expect("strace has started kairan")
}

#[test]
fn acks_and_forwards_follow_the_fdatasync_of_their_delivery() {
    let Some(strace) = strace() else { return };
    let started = Instant::now();
    let temp = tempfile::Builder::new().prefix("kairan-syscalls-").tempdir().expect("tempdir");
    let dir = temp.path();
    let spec = TreeSpec {
        clinics: 0,
        district_broker: None,
        log_level: "info,kairan_node::report=debug".into(),
        sync_interval_secs: 60,
    };
    let tree = TreeFiles::write(dir, &spec);
    let [national, prefecture, district] = [&tree.relays[0], &tree.relays[1], &tree.relays[2]];
    let node = |config: &Path| [OsStr::new("node"), OsStr::new("--config"), config.as_os_str()];
    let trace_path = dir.join("prefecture.strace");
    let mut strace_args: Vec<&OsStr> =
        ["-f", "-tt", "-yy", "-xx", "-s", "4194304", "-e", TRACED, "-o"].iter().map(OsStr::new).collect();
    strace_args.push(trace_path.as_os_str());
    strace_args.push(OsStr::new(KAIRAN));
    strace_args.extend(node(&prefecture.config));
    let mut daemons = [
        Daemon::new("national", Path::new(KAIRAN), &node(&national.config), &national.dir.join("log")),
        Daemon::new("prefecture", Path::new(strace), &strace_args, &prefecture.dir.join("log")),
        Daemon::new("district", Path::new(KAIRAN), &node(&district.config), &district.dir.join("log")),
    ];
    for daemon in &mut daemons {
        daemon.start();
    }
    wait_for("the prefecture and the district to connect upstream", Duration::from_secs(20), || {
        daemons[1..].iter().all(|d| d.log_count("connected upstream") > 0)
    });

    let advisories = signed(&tree, ADVISORIES);
    let topic = topics::ingest_of(&national.id, &tree.origin.id);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for (bytes, _) in &advisories {
        runtime
            .block_on(publish_acked(
                &national.broker,
                Some(&tree.origin.credentials),
                &topic,
                bytes.clone(),
                Duration::from_secs(10),
            ))
            .expect("the national's broker acknowledges");
    }
    let accepted = |daemon: &Daemon| {
        let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
        log.lines().filter(|l| l.contains("accepted") && l.contains("relay_seq")).count()
    };
    wait_for("the district to hold every advisory", Duration::from_secs(20), || {
        accepted(&daemons[2]) >= ADVISORIES
    });

    // Stop the traced relay cleanly; strace exits with it, its trace complete.
    let kairan_pid = traced_child(daemons[1].pid().expect("strace runs"));
    let status = Command::new("kill").args(["-TERM", &kairan_pid.to_string()]).status().expect("kill");
    assert!(status.success());
    let exit = daemons[1].wait_exit(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "the traced prefecture stops: {exit:?}\n{}",
        daemons[1].log_tail(20)
    );
    let text = std::fs::read_to_string(&trace_path).expect("trace");
    if let Ok(keep) = std::env::var("KAIRAN_SYSCALL_TRACE_KEEP") {
        std::fs::write(&keep, &text).expect("keep the trace");
    }

    let report = trace::check(&text, national.broker.port).expect("the trace reads");
    println!(
        "syscall order: {} PUBACKs to the parent for deliveries ({} for other messages), {} deliveries published onward, \
         {} delivery records in {} appends, {} segment fdatasyncs, {} index fdatasyncs; {:.1}s",
        report.acks,
        report.other_acks,
        report.forwards,
        report.records,
        report.appends,
        report.segment_syncs,
        report.index_syncs,
        started.elapsed().as_secs_f64()
    );
    assert!(report.violations.is_empty(), "durability order broken:\n{}", report.violations.join("\n"));
    assert!(report.records >= ADVISORIES, "every advisory appended to the log: {report:?}");
    assert!(report.acks >= ADVISORIES, "every advisory acknowledged to the parent and checked: {report:?}");
    assert!(report.forwards >= ADVISORIES, "every advisory forwarded and checked: {report:?}");
}

/// A trace recorded from the test above (2 advisories, trimmed to the calls the rule reads).
const RECORDED: &str = include_str!("fixtures/prefecture.strace");
/// The national's broker port in the recorded trace.
const RECORDED_PARENT_PORT: u16 = 0;

#[test]
fn the_recorded_trace_keeps_the_order() {
    let report = trace::check(RECORDED, RECORDED_PARENT_PORT).expect("reads");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert!(report.acks >= 2 && report.forwards >= 2 && report.records >= 2, "{report:?}");
}
