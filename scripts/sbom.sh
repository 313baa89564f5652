#!/usr/bin/env bash
# The CycloneDX SBOM of the `kairan` binary, to ship beside the Debian package: every crate
# compiled into the release build (default features, this machine's target, build-time-only
# dependencies left out), with versions, licences and package URLs.
#
#   bash scripts/sbom.sh            # writes target/sbom/kairan.cdx.json
#
# Installs cargo-cyclonedx (`cargo install --locked --version 0.5.9`, the version this script
# is written for) when it is missing. The SBOM describes
# Cargo.lock as committed: run it from the commit the package is built from.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if ! cargo cyclonedx --version >/dev/null 2>&1; then
  cargo install --locked --version 0.5.9 cargo-cyclonedx
fi

out=target/sbom
mkdir -p "$out"
target=$(rustc -vV | sed -n 's/^host: //p')
# cargo-cyclonedx writes the SBOM of each binary beside the package's Cargo.toml as
# `<binary>_bin.cdx.json` (with --describe binaries it takes no --override-filename).
produced=node/kairan_bin.cdx.json
rm -f "$produced"
cargo cyclonedx --manifest-path node/Cargo.toml --format json --spec-version 1.5 \
  --describe binaries --target "$target" --no-build-deps -q
if [ ! -f "$produced" ]; then
  echo "FAIL: cargo cyclonedx wrote no SBOM ($produced)" >&2
  exit 1
fi
mv "$produced" "$out/kairan.cdx.json"

# Sanity: a CycloneDX document that lists the crates we know are compiled in.
python3 - "$out/kairan.cdx.json" <<'PY'
import json, sys
bom = json.load(open(sys.argv[1]))
assert bom.get("bomFormat") == "CycloneDX", "not a CycloneDX document"
names = {c.get("name") for c in bom.get("components", [])}
for crate in ("kairan-protocol", "rumqttc", "rmqtt", "rustls", "sled", "ed25519-dalek", "time"):
    assert crate in names, f"{crate} missing from the SBOM"
print(f"SBOM: {sys.argv[1]}: CycloneDX {bom.get('specVersion')}, {len(names)} components")
PY
