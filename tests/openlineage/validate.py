"""Validate OpenLineage events (a JSON array on stdin) against the 2-0-2 core spec vendored
beside this file, with format checks on (uuid, date-time, uri). Prints one line per invalid
event and exits 1 if any; exits 0 when every event is valid."""
import json
import pathlib
import sys

import jsonschema

spec = json.loads((pathlib.Path(__file__).parent / "OpenLineage-2-0-2.json").read_text())
validator = jsonschema.Draft202012Validator(
    spec, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
bad = 0
for i, event in enumerate(json.load(sys.stdin)):
    errors = sorted(validator.iter_errors(event), key=lambda e: list(e.path))
    for e in errors:
        bad += 1
        print(f"event {i} ({event.get('eventType')} {event.get('job', {}).get('name')}): {e.message} at {list(e.path)}")
sys.exit(1 if bad else 0)
