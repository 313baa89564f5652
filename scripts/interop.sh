#!/usr/bin/env bash
# End-to-end check of the issue-2 CLI contract, and of DSSE interoperability:
# keygen -> trust init -> cert issue -> advisory template | sign -> kairan verify, then the
# same envelope verified by securesystemslib (an independent DSSE implementation) given only
# the origin's .pub file, and a tampered copy refused by both.
set -euo pipefail
kairan=${KAIRAN:-target/debug/kairan}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$kairan" keygen --name mhlw --out "$work/keys" >/dev/null
for i in 1 2 3; do "$kairan" keygen --name "root-$i" --out "$work/keys" >/dev/null; done
"$kairan" trust init --threshold 2 --root "$work/keys/root-1.pub" --root "$work/keys/root-2.pub" \
  --root "$work/keys/root-3.pub" --out "$work/trust.toml"
"$kairan" cert issue --subject mhlw --subject-key "$work/keys/mhlw.pub" --role origin --scope jp \
  --issuer-key "$work/keys/root-1.key" --issuer-key "$work/keys/root-3.key" --out "$work/mhlw.cert.json" 2>/dev/null
"$kairan" advisory template | "$kairan" advisory sign --key "$work/keys/mhlw.key" - > "$work/advisory.json"
"$kairan" verify --trust "$work/trust.toml" --cert "$work/mhlw.cert.json" "$work/advisory.json" >/dev/null
python3 scripts/dsse_interop.py "$work/keys/mhlw.pub" "$work/advisory.json"
python3 - "$work/advisory.json" "$work/tampered.json" <<'PY'
import base64, json, sys
envelope = json.load(open(sys.argv[1]))
payload = bytearray(base64.b64decode(envelope["payload"]))
payload[20] ^= 1
envelope["payload"] = base64.b64encode(bytes(payload)).decode()
json.dump(envelope, open(sys.argv[2], "w"))
PY
if python3 scripts/dsse_interop.py "$work/keys/mhlw.pub" "$work/tampered.json" >/dev/null; then
  echo "interop: securesystemslib accepted a tampered envelope" >&2; exit 1
fi
if "$kairan" verify --trust "$work/trust.toml" --cert "$work/mhlw.cert.json" "$work/tampered.json" 2>/dev/null; then
  echo "interop: kairan accepted a tampered envelope" >&2; exit 1
fi
echo "interop: ok (kairan and securesystemslib agree on the signed and the tampered envelope)"
