#!/usr/bin/env bash
# What crosses the wire: a packet capture of the loopback interface (tcpdump -i lo) while a
# one-clinic tree starts (the clinic connects to its district's broker) and the clinic
# receives a TLP:AMBER advisory, every broker and link exactly as in production (TLS 1.3).
# The capture must contain neither the clinic's password nor the advisory's title (as text,
# or as it reads inside the base64 payload at any alignment), nor any piece of the payload.
#
# The same run with every link in plaintext is the control: there the capture must contain
# the password, the payload and the base64 titles, which shows the capture and the search
# would find them. (The raw titles are never on the wire even then: DSSE carries the payload
# in base64.) The needles are written by the ignored test `tls::capture_probe`
# (tests/tests/tls.rs); the clinic's password and the titles are random per run.
#
# Needs root (tcpdump); installs Debian's tcpdump if it is missing. Other programs' loopback
# traffic is captured too; it cannot contain this run's random needles.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if ! command -v tcpdump >/dev/null 2>&1 && [ ! -x /usr/sbin/tcpdump ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tcpdump
fi
TCPDUMP=$(command -v tcpdump || echo /usr/sbin/tcpdump)

work=$(mktemp -d)
dump_pid=""
cleanup() {
  if [ -n "$dump_pid" ]; then kill "$dump_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Build first, so that the capture holds the run only.
cargo test --workspace --test tls --no-run

# found NEEDLE PCAP: how many packets' bytes contain NEEDLE (as bytes, anywhere).
found() {
  grep -c -a -F -- "$1" "$2" || true
}

# capture MODE: runs the probe under tcpdump; leaves $work/MODE.pcap and $work/MODE.needles.
capture() {
  local mode=$1 plaintext=0
  [ "$mode" = plaintext ] && plaintext=1
  "$TCPDUMP" -i lo -s 0 -U -Z root -w "$work/$mode.pcap" tcp 2>"$work/$mode.tcpdump.log" &
  dump_pid=$!
  for _ in $(seq 50); do
    grep -q "listening on lo" "$work/$mode.tcpdump.log" 2>/dev/null && break
    sleep 0.1
  done
  KAIRAN_CAPTURE_NEEDLES="$work/$mode.needles" KAIRAN_CAPTURE_PLAINTEXT=$plaintext \
    cargo test -q --workspace --test tls capture_probe -- --ignored --exact >"$work/$mode.test.log" 2>&1 \
    || { cat "$work/$mode.test.log"; echo "FAIL: the $mode probe did not run"; exit 1; }
  sleep 0.5
  kill -INT "$dump_pid"
  wait "$dump_pid" 2>/dev/null || true
  dump_pid=""
  local packets
  packets=$("$TCPDUMP" -r "$work/$mode.pcap" 2>/dev/null | wc -l)
  echo "== $mode: captured $packets packets on lo ($(stat -c %s "$work/$mode.pcap") bytes)"
  if [ "$packets" -lt 20 ]; then
    echo "FAIL: the $mode capture holds almost nothing; the probe's traffic was not captured"
    exit 1
  fi
}

status=0

capture plaintext
while IFS=$'\t' read -r name needle; do
  count=$(found "$needle" "$work/plaintext.pcap")
  printf '   %-22s %s\n' "$name" "$count"
done <"$work/plaintext.needles"
for must in password payload; do
  needle=$(awk -F'\t' -v n="$must" '$1 == n { print $2 }' "$work/plaintext.needles")
  if [ "$(found "$needle" "$work/plaintext.pcap")" -eq 0 ]; then
    echo "FAIL: control: the plaintext capture should contain the $must (the search cannot be trusted)"
    status=1
  fi
done
for lang in ja en; do
  seen=0
  while IFS=$'\t' read -r name needle; do
    case $name in title-$lang-base64-*) [ "$(found "$needle" "$work/plaintext.pcap")" -gt 0 ] && seen=1 ;; esac
  done <"$work/plaintext.needles"
  if [ "$seen" -eq 0 ]; then
    echo "FAIL: control: the plaintext capture should contain the $lang title inside the base64 payload"
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "OK   control: without TLS the capture shows the password, the payload and the titles"

capture tls
while IFS=$'\t' read -r name needle; do
  count=$(found "$needle" "$work/tls.pcap")
  printf '   %-22s %s\n' "$name" "$count"
  if [ "$count" -ne 0 ]; then
    echo "FAIL: the TLS capture contains the $name"
    status=1
  fi
done <"$work/tls.needles"
if [ "$status" -eq 0 ]; then
  echo "OK   with TLS 1.3 the capture contains neither the clinic's password nor the advisory's title nor its payload"
fi
exit "$status"
