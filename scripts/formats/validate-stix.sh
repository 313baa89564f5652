#!/usr/bin/env bash
# Validates STIX 2.1 bundles with the OASIS stix2-validator (bundled STIX 2.1 JSON schemas plus
# its "must" and "should" checks), strict: every warning fails, except two deliberate ones:
#   103  ids should be UUIDv4 -- kairan's ids are UUIDv5 of the advisory digest, so that an
#        export is reproducible (STIX 2.1 section 2.9 allows any UUID; v4 is a SHOULD);
#   302  an external reference with a URL should carry a hash of the page -- the linked pages
#        (IPA, JPCERT/CC, JVN) change, and no hash of them can be known offline.
# Usage: validate-stix.sh FILE...   (stix2_validator on PATH)
set -euo pipefail
status=0
for file in "$@"; do
  if out=$(stix2_validator --strict --disable 103,302 "$file" 2>&1); then
    echo "ok   STIX 2.1 (stix2-validator --strict): $file"
  else
    echo "FAIL STIX 2.1 (stix2-validator --strict): $file"
    echo "$out" | grep -E '^\s+\[(X|!)\]' | sed 's/^ */     /'
    status=1
  fi
done
exit $status
