#!/usr/bin/env python3
"""Verify a flightdeck timeline without flightdeck: the hash chain of
docs/reference/events.md in a few lines.

    flightdeck audit export MISSION --format jsonl | python3 docs/verify_timeline.py

Each event's hash is sha256(prev_hash + "\n" + JCS({"mission","seq","at","type","data"})).
json.dumps with sorted keys and no whitespace is RFC 8785 JCS for timelines whose keys are
ASCII and whose numbers are integers (true of flightdeck's event data today).
"""
import hashlib, json, sys

prev, count = "0" * 64, 0
for count, line in enumerate(sys.stdin, start=1):
    event = json.loads(line)
    body = {k: event[k] for k in ("mission", "seq", "at", "type", "data")}
    jcs = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256((prev + "\n" + jcs).encode("utf-8")).hexdigest()
    if event["seq"] != count or event["prev_hash"] != prev or event["hash"] != digest:
        sys.exit(f"seq {event['seq']}: chain broken (expected seq {count}, hash {digest})")
    prev = digest
print(f"ok: {count} events, head {prev}")
