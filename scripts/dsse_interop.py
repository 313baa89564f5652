#!/usr/bin/env python3
"""Verify a kairan advisory envelope with an independent DSSE implementation.

Uses securesystemslib (the reference DSSE implementation by secure-systems-lab), given only
the origin's `.pub` file (64 hex characters). Exit 0 if the envelope verifies, 1 if not.

    pip install 'securesystemslib[crypto]'
    python3 scripts/dsse_interop.py keys/mhlw.pub advisory.json
"""
import hashlib
import json
import sys

from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def main() -> int:
    pub_path, envelope_path = sys.argv[1], sys.argv[2]
    public_hex = open(pub_path, encoding="ascii").read().strip()
    keyid = hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()
    key = SSlibKey(keyid, "ed25519", "ed25519", {"public": public_hex})
    envelope = Envelope.from_dict(json.load(open(envelope_path, encoding="utf-8")))
    try:
        accepted = envelope.verify([key], 1)
    except Exception as error:  # securesystemslib raises VerificationError on failure
        print(f"securesystemslib: NOT verified: {error}")
        return 1
    print(f"securesystemslib {envelope.payload_type}: verified by {', '.join(accepted)}")
    payload = json.loads(envelope.payload)
    print(f"payload origin={payload['origin']} seq={payload['seq']} title.ja={payload['title']['ja']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
