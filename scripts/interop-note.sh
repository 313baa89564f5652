#!/usr/bin/env bash
# Independent check of kairan's transparency-log formats (docs/protocol.md section 18):
# checkpoints, signed notes, cosignatures and RFC 9162 tree heads and proofs made by
# kairan-protocol (protocol/examples/checkpoint.rs) are verified by Go's
# golang.org/x/mod/sumdb/note and sumdb/tlog (Debian's golang-golang-x-mod-dev), built offline;
# a checkpoint signed by Go is verified by kairan; a tampered checkpoint is refused by both.
# Installs golang-go and golang-golang-x-mod-dev with apt-get when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

gocode=/usr/share/gocode/src/golang.org/x/mod/sumdb
if ! command -v go >/dev/null 2>&1 || [ ! -f "$gocode/note/note.go" ] || [ ! -f "$gocode/tlog/tlog.go" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-golang-x-mod-dev >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Go, offline: GOPATH mode over Debian's source tree, no module proxy.
export GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= GOCACHE="$work/gocache" CGO_ENABLED=0
go build -o "$work/interop-note" scripts/interop-note/main.go
echo "interop-note: $(go version), golang.org/x/mod $(dpkg-query -W -f='${Version}' golang-golang-x-mod-dev 2>/dev/null || echo '?')"

cargo build -q -p kairan-protocol --example checkpoint
checkpoint=target/debug/examples/checkpoint
"$checkpoint" make "$work/log" "${LEAVES:-1000}" >/dev/null

# 1. Go verifies kairan's tree heads, proofs and cosigned checkpoint.
"$work/interop-note" check "$work/log"
"$checkpoint" verify "$work/log/checkpoint.note" "$work/log/log.vkey" "$work/log/witness.vkey"

# 2. kairan verifies a checkpoint of the same leaves signed and cosigned in Go.
"$work/interop-note" sign "$work/log" >/dev/null
"$checkpoint" verify "$work/log/go.note" "$work/log/go.vkey" "$work/log/go-witness.vkey"
"$work/interop-note" open "$work/log/go.note" "$work/log/go.vkey" "$work/log/go-witness.vkey"
cmp -s <(sed -n 2,3p "$work/log/go.note") <(sed -n 2,3p "$work/log/checkpoint.note") ||
  { echo "interop-note: Go and kairan disagree on the tree head" >&2; exit 1; }

# 3. Tampered notes are refused by both: another size, another root, a cosignature's time.
refuse() { # name, file
  if "$work/interop-note" open "$2" "$work/log/log.vkey" "$work/log/witness.vkey" >/dev/null 2>&1; then
    echo "interop-note: Go accepted a tampered checkpoint ($1)" >&2; exit 1
  fi
  if "$checkpoint" verify "$2" "$work/log/log.vkey" "$work/log/witness.vkey" >/dev/null 2>&1; then
    echo "interop-note: kairan accepted a tampered checkpoint ($1)" >&2; exit 1
  fi
}
"$work/interop-note" open "$work/log/checkpoint.note" "$work/log/log.vkey" "$work/log/witness.vkey" >/dev/null
python3 - "$work/log/checkpoint.note" "$work" <<'PY'
import base64, sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
def write(name, changed):
    open(f"{sys.argv[2]}/{name}.note", "w", encoding="utf-8").write("\n".join(changed))
write("size", [lines[0], str(int(lines[1]) + 1)] + lines[2:])
root = bytearray(base64.b64decode(lines[2]))
root[0] ^= 1
write("root", lines[:2] + [base64.b64encode(bytes(root)).decode()] + lines[3:])
prefix, encoded = lines[5].rsplit(" ", 1)
raw = bytearray(base64.b64decode(encoded))
raw[11] ^= 1  # the last byte of the cosignature's timestamp
write("time", lines[:5] + [prefix + " " + base64.b64encode(bytes(raw)).decode()] + lines[6:])
PY
refuse "size" "$work/size.note"
refuse "root" "$work/root.note"
refuse "cosignature time" "$work/time.note"
for file in size root time; do
  cmp -s "$work/$file.note" "$work/log/checkpoint.note" && { echo "interop-note: $file not tampered" >&2; exit 1; }
done
echo "interop-note: ok (Go's sumdb/note and sumdb/tlog and kairan agree; tampered checkpoints refused by both)"
