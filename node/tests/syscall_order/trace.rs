//! Reading an `strace -f -tt -yy -xx` trace of a relay: its system calls in the order they
//! happened, the MQTT packets on its sockets, the records it appended to its segment log, and
//! the order rule checked on them.
//!
//! Order is the order of lines: strace prints a call when the thread stops at its entry or
//! exit, so a call whose exit line comes before another's entry line had returned before the
//! other began. A call interrupted by another thread's (`<unfinished ...>` … `<... resumed>`)
//! starts at its first line and ends at its second.
//!
//! The rule ([`check`]): every PUBACK the relay sends to its parent for a delivery, and every
//! PUBLISH it writes that carries a delivery (a forward, or a catch-up page), starts after an
//! `fdatasync`/`fsync` of the segment file holding that delivery *ended*, and that sync began
//! after the write of the delivery's record ended.

use std::collections::{BTreeMap, HashMap};

use kairan_node::store::log_record::{self, LogRecord};
use kairan_node::store::segment_log;
use kairan_protocol::{Delivery, Digest};

/// One system call, its two lines merged when it was interrupted.
#[derive(Debug, Clone)]
pub struct Call {
    /// Line index where it began.
    pub start: usize,
    /// Line index where it returned.
    pub end: usize,
    /// Time of its (last) line, for messages.
    pub time: String,
    /// Syscall name.
    pub name: String,
    /// Its arguments, raw.
    pub args: String,
    /// Its return value (-1 for errors, 0 when not a number).
    pub ret: i64,
}

/// Decodes strace's C escapes (`-xx` writes every byte as `\xNN`).
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let next = *bytes.get(i + 1).ok_or("escape at end")?;
        match next {
            b'x' => {
                let hex = text.get(i + 2..i + 4).ok_or("short \\x escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| format!("\\x{hex}: {e}"))?);
                i += 4;
            }
            b'n' | b't' | b'r' | b'\\' | b'"' => {
                out.push(match next {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    other => other,
                });
                i += 2;
            }
            b'0'..=b'7' => {
                let end =
                    (i + 1..bytes.len().min(i + 4)).take_while(|j| (b'0'..=b'7').contains(&bytes[*j])).last();
                let end = end.ok_or("octal")? + 1;
                out.push(u8::from_str_radix(&text[i + 1..end], 8).map_err(|e| e.to_string())?);
                i = end;
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        }
    }
    Ok(out)
}

/// Splits a trace into calls, merging `<unfinished ...>` with its `<... resumed>`.
pub fn calls(text: &str) -> Result<Vec<Call>, String> {
    let mut calls = Vec::new();
    let mut unfinished: HashMap<String, (usize, String)> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        // strace pads the pid to five columns: `6641  18:17:38.047014 read(…`.
        let Some((pid, rest)) = line.trim_start().split_once(' ') else { continue };
        let Some((time, rest)) = rest.trim_start().split_once(' ') else { continue };
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid.to_owned(), (index, head.to_owned()));
            continue;
        }
        let (start, whole) = if let Some(resumed) = rest.strip_prefix("<... ") {
            let (_, tail) = resumed.split_once(" resumed>").ok_or_else(|| format!("line {index}: {line}"))?;
            let (start, head) =
                unfinished.remove(pid).ok_or_else(|| format!("line {index}: resumed, never begun"))?;
            (start, format!("{head}{tail}"))
        } else {
            (index, rest.to_owned())
        };
        let Some((name, after)) = whole.split_once('(') else { continue };
        let Some((args, ret)) = after.rsplit_once(") = ") else { continue };
        let ret = ret.split_whitespace().next().and_then(|r| r.parse().ok()).unwrap_or(0);
        calls.push(Call {
            start,
            end: index,
            time: time.to_owned(),
            name: name.to_owned(),
            args: args.to_owned(),
            ret,
        });
    }
    Ok(calls)
}

/// The first argument's descriptor annotation (`-yy`): a path, or `TCP:[a:p->b:q]`.
pub fn fd_target(args: &str) -> Option<String> {
    let open = args.find('<')? + 1;
    // A socket's annotation holds `->`; a path's is escaped byte by byte.
    let close = match args[open..].find(":[") {
        Some(bracket) if bracket < 8 => args[open..].find("]>")? + open + 1,
        _ => args[open..].find('>')? + open,
    };
    unescape(&args[open..close]).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Every quoted string argument, decoded, in order (for `writev`, the `iov_base`s).
pub fn strings(args: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some(open) = rest.find('"') {
        let after = &rest[open + 1..];
        let close = after.find('"').ok_or("unterminated string")?;
        if after[close + 1..].starts_with("...") {
            return Err("a string was cut short: raise strace -s".into());
        }
        out.push(unescape(&after[..close])?);
        rest = &after[close + 1..];
    }
    Ok(out)
}

/// The two ports of a `TCP:[127.0.0.1:a->127.0.0.1:b]` target.
pub fn tcp_ports(target: &str) -> Option<(u16, u16)> {
    let inner = target.strip_prefix("TCP:[")?.strip_suffix(']')?;
    let (local, remote) = inner.split_once("->")?;
    let port = |end: &str| end.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
    Some((port(local)?, port(remote)?))
}

/// An MQTT 3.1.1 packet seen on a socket.
#[derive(Debug, Clone)]
pub enum Packet {
    /// PUBLISH: topic, packet id (QoS 1), payload.
    Publish { topic: String, id: Option<u16>, payload: Vec<u8> },
    /// PUBACK with its packet id.
    PubAck(u16),
    /// Anything else.
    Other,
}

/// Cuts complete packets off the front of `buffer`.
fn packets(buffer: &mut Vec<u8>) -> Result<Vec<Packet>, String> {
    let mut out = Vec::new();
    loop {
        let (mut length, mut shift, mut at) = (0usize, 0, 1);
        let header_done = loop {
            let Some(byte) = buffer.get(at) else { break false };
            length |= usize::from(byte & 0x7f) << shift;
            at += 1;
            if byte & 0x80 == 0 {
                break true;
            }
            shift += 7;
            if shift > 21 {
                return Err("bad MQTT remaining length".into());
            }
        };
        if !header_done || buffer.len() < at + length {
            return Ok(out);
        }
        let first = buffer[0];
        let body: Vec<u8> = buffer.drain(..at + length).skip(at).collect();
        out.push(match first >> 4 {
            3 => {
                let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                let topic = String::from_utf8_lossy(&body[2..2 + topic_len]).into_owned();
                let mut at = 2 + topic_len;
                let id = ((first >> 1) & 3 > 0).then(|| {
                    at += 2;
                    u16::from_be_bytes([body[at - 2], body[at - 1]])
                });
                Packet::Publish { topic, id, payload: body[at..].to_vec() }
            }
            4 if body.len() == 2 => Packet::PubAck(u16::from_be_bytes([body[0], body[1]])),
            _ => Packet::Other,
        });
    }
}

/// The advisory digests a PUBLISH carries: one for a delivery, several for a catch-up page.
fn carried(topic: &str, payload: &[u8]) -> Vec<Digest> {
    if topic.contains("/deliveries") {
        Delivery::from_json(payload).map(|d| vec![d.claimed_digest()]).unwrap_or_default()
    } else if topic.ends_with("/resp") {
        kairan_protocol::sync::parse_response(payload)
            .map(|page| page.deliveries.iter().map(Delivery::claimed_digest).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// PUBACKs to the parent for deliveries, checked.
    pub acks: usize,
    /// PUBACKs to the parent for other messages (trust, heads), not about deliveries.
    pub other_acks: usize,
    /// Deliveries carried by PUBLISHes the relay wrote (forwards, pages), checked.
    pub forwards: usize,
    /// Appends to the segment log and the delivery records in them.
    pub appends: usize,
    /// Delivery records appended.
    pub records: usize,
    /// `fdatasync`/`fsync` calls on segment files.
    pub segment_syncs: usize,
    /// `fdatasync`/`fsync` calls on sled's data file.
    pub index_syncs: usize,
    /// Broken rules, described.
    pub violations: Vec<String>,
}

/// Checks the rule on a trace of the relay whose parent broker listens on `parent_port`.
pub fn check(text: &str, parent_port: u16) -> Result<Report, String> {
    let calls = calls(text)?;
    let mut report = Report::default();
    // Where each delivery's record was written: (segment path, end of the write).
    let mut written: HashMap<Digest, (String, usize)> = HashMap::new();
    let mut syncs: Vec<(String, usize, usize)> = Vec::new();
    let mut outgoing: HashMap<String, (Vec<u8>, Option<usize>)> = HashMap::new();
    let mut incoming: HashMap<String, Vec<u8>> = HashMap::new();
    // Packet events by line: (line, is_outgoing, connection, packet).
    let mut events: BTreeMap<(usize, usize), (bool, String, Packet, String)> = BTreeMap::new();
    for (n, call) in calls.iter().enumerate() {
        let Some(target) = fd_target(&call.args) else { continue };
        match call.name.as_str() {
            "fdatasync" | "fsync" if call.ret == 0 => {
                if target.ends_with(".seg") {
                    report.segment_syncs += 1;
                    syncs.push((target, call.start, call.end));
                } else if target.ends_with("/index/db") {
                    report.index_syncs += 1;
                }
            }
            "pwrite64" | "write" if target.ends_with(".seg") && call.ret > 0 => {
                let data = strings(&call.args)?.into_iter().next().unwrap_or_default();
                let mut counted = false;
                for frame in segment_log::frames_in(&data[..(call.ret as usize).min(data.len())]) {
                    if let Ok(LogRecord::Delivery(record)) = log_record::decode(frame) {
                        written.insert(record.digest, (target.clone(), call.end));
                        report.records += 1;
                        counted = true;
                    }
                }
                report.appends += usize::from(counted);
            }
            "sendto" | "write" | "writev" | "sendmsg" if target.starts_with("TCP:") && call.ret > 0 => {
                let data: Vec<u8> = strings(&call.args)?.concat();
                let sent = &data[..(call.ret as usize).min(data.len())];
                let (buffer, first) = outgoing.entry(target.clone()).or_default();
                if buffer.is_empty() {
                    *first = Some(call.start);
                }
                buffer.extend_from_slice(sent);
                let start = first.unwrap_or(call.start);
                for (k, packet) in packets(buffer)?.into_iter().enumerate() {
                    events.insert((start, n * 1000 + k), (true, target.clone(), packet, call.time.clone()));
                }
                *first = (!buffer.is_empty()).then_some(call.start);
            }
            "recvfrom" | "read" | "readv" | "recvmsg" if target.starts_with("TCP:") && call.ret > 0 => {
                let data: Vec<u8> = strings(&call.args)?.concat();
                let buffer = incoming.entry(target.clone()).or_default();
                buffer.extend_from_slice(&data[..(call.ret as usize).min(data.len())]);
                for (k, packet) in packets(buffer)?.into_iter().enumerate() {
                    events
                        .insert((call.end, n * 1000 + k), (false, target.clone(), packet, call.time.clone()));
                }
            }
            _ => {}
        }
    }
    // When each delivery became durable: the end of the first sync of its segment that began
    // after its write ended.
    let durable = |digest: &Digest| -> Option<usize> {
        let (path, written_at) = written.get(digest)?;
        syncs.iter().filter(|(p, start, _)| p == path && start > written_at).map(|(_, _, end)| *end).min()
    };
    let mut pending: HashMap<(String, u16), Option<Digest>> = HashMap::new();
    for ((line, _), (is_outgoing, connection, packet, time)) in events {
        let to_parent = tcp_ports(&connection).is_some_and(|(_, remote)| remote == parent_port);
        match (is_outgoing, packet) {
            (false, Packet::Publish { topic, id: Some(id), payload }) if to_parent => {
                let digest = topic
                    .contains("/deliveries")
                    .then(|| carried(&topic, &payload).first().copied())
                    .flatten();
                pending.insert((connection, id), digest);
            }
            (true, Packet::PubAck(id)) if to_parent => match pending.remove(&(connection, id)) {
                Some(Some(digest)) => {
                    report.acks += 1;
                    if durable(&digest).is_none_or(|at| at >= line) {
                        report.violations.push(format!("{time} line {line}: PUBACK {id} to the parent for {digest} before the fdatasync of its segment"));
                    }
                }
                _ => report.other_acks += 1,
            },
            (true, Packet::Publish { topic, payload, .. }) => {
                for digest in carried(&topic, &payload) {
                    report.forwards += 1;
                    if durable(&digest).is_none_or(|at| at >= line) {
                        report.violations.push(format!("{time} line {line}: PUBLISH on {topic} carries {digest} before the fdatasync of its segment"));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(report)
}
