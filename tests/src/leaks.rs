//! Looking for an advisory's text where it must not be: in files on disk, in what a member's
//! client received, in a packet capture of the loopback interface.
//!
//! Advisory text never travels as is: a DSSE envelope carries its payload in base64. So every
//! search looks for the text itself and for its base64 at each of the three alignments it can
//! have inside a longer base64 string ([`base64_forms`]) — the way `scripts/tls-capture.sh`
//! searches a capture. A test first finds an advisory in clear with the same search (a
//! control), so that "not found" means something.
//!
//! [`LoopbackCapture`] runs `tcpdump -i lo` on the given TCP ports while a test runs: a real
//! packet capture of what crosses each broker's socket, as an eavesdropper on the machine or a
//! broker operator dumping traffic would see it. It needs root and tcpdump; without them the
//! test skips the capture with a notice, unless `KAIRAN_REQUIRE_TCPDUMP=1` (CI) makes that a
//! failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// `text` as bytes, and its base64 at every alignment inside a longer base64 string (without
/// the edge characters that depend on the neighbouring bytes).
pub fn base64_forms(text: &str) -> Vec<Vec<u8>> {
    let mut forms = vec![text.as_bytes().to_vec()];
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(text.as_bytes());
        let encoded = STANDARD.encode(&shifted);
        let start = if shift == 0 { 0 } else { 4 };
        forms.push(encoded.as_bytes()[start..encoded.len() - 4].to_vec());
    }
    forms
}

/// Whether `haystack` holds `text` in any of its [`base64_forms`].
pub fn holds(haystack: &[u8], text: &str) -> bool {
    base64_forms(text).iter().any(|form| contains(haystack, form))
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

/// Every file under `dir` that [`holds`] `text`.
pub fn files_holding(dir: &Path, text: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir") {
                pending.push(entry.expect("entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if holds(&bytes, text) {
                hits.push(path);
            }
        }
    }
    hits
}

/// A running `tcpdump` on the loopback interface, writing a pcap file.
#[derive(Debug)]
pub struct LoopbackCapture {
    child: Option<Child>,
    pcap: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopbackCapture {
    /// Starts capturing TCP traffic to or from any of `ports` on `lo` and returns once tcpdump
    /// listens. `None` (with a printed notice) when tcpdump is missing or cannot capture (not
    /// root), unless `KAIRAN_REQUIRE_TCPDUMP=1`, which turns that into a panic.
    pub fn start(ports: &[u16]) -> Option<Self> {
        let required = std::env::var("KAIRAN_REQUIRE_TCPDUMP").is_ok_and(|v| v == "1");
        let Some(tcpdump) =
            ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"].into_iter().find(|p| Path::new(p).exists())
        else {
            assert!(
                !required,
                "KAIRAN_REQUIRE_TCPDUMP=1 but tcpdump is not installed (apt-get install -y tcpdump)"
            );
            eprintln!("tcpdump is not installed: the packet capture part of this test is skipped");
            return None;
        };
        assert!(!ports.is_empty(), "no ports to capture");
        let dir = tempfile::tempdir().expect("tempdir");
        let pcap = dir.path().join("capture.pcap");
        let log = dir.path().join("tcpdump.log");
        let filter = ports.iter().map(|port| format!("port {port}")).collect::<Vec<_>>().join(" or ");
        let child = Command::new(tcpdump)
            .args(["-i", "lo", "-s", "0", "-U", "-Z", "root", "-w"])
            .arg(&pcap)
            .arg(format!("tcp and ({filter})"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("tcpdump starts");
        let mut capture = LoopbackCapture { child: Some(child), pcap, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            if said.contains("listening on lo") {
                return Some(capture);
            }
            let exited = capture.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                assert!(!required, "KAIRAN_REQUIRE_TCPDUMP=1 but tcpdump could not capture: {said}");
                eprintln!(
                    "tcpdump cannot capture here ({}): the packet capture part is skipped",
                    said.trim()
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops tcpdump (SIGINT, so that it flushes) and returns the capture's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        if let Some(mut child) = self.child.take() {
            // A positive pid: procps' kill parses it correctly (never `kill -SIG -N` here).
            let _ = Command::new("kill").args(["-s", "INT", &child.id().to_string()]).status();
            let _ = child.wait();
        }
        std::fs::read(&self.pcap).expect("the capture file")
    }
}

impl Drop for LoopbackCapture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_found_inside_base64_at_every_alignment() {
        let text = "勧告の題名 title";
        for prefix_len in 0..6 {
            let mut bytes = vec![b'x'; prefix_len];
            bytes.extend_from_slice(text.as_bytes());
            bytes.extend_from_slice(b"tail");
            let encoded = STANDARD.encode(&bytes);
            let wrapped = format!("{{\"payload\":\"{encoded}\"}}");
            assert!(holds(wrapped.as_bytes(), text), "prefix {prefix_len}");
            assert!(!holds(wrapped.as_bytes(), "another title"), "prefix {prefix_len}");
        }
        assert!(holds(text.as_bytes(), text));
    }
}
