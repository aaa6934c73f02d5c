#!/usr/bin/env python3
"""Verify a flightdeck timeline without flightdeck: the hash chain of
docs/reference/events.md in a few lines.

    flightdeck audit export MISSION --format jsonl | python3 docs/verify_timeline.py

Each event's hash is sha256(prev_hash + "\n" + JCS({"mission","seq","at","type","data"})),
where JCS is RFC 8785: keys sorted by UTF-16 code units, strings escaped as JSON.stringify
does, and every number printed as ECMAScript's Number.prototype.toString prints the double
it is (5e-08 is "5e-8", 2.0 is "2", 1e16 is "10000000000000000").
"""
import hashlib, json, sys


def es_number(x):
    """A JSON number as ECMAScript prints the double it is (RFC 8785, section 3.2.2.3)."""
    if isinstance(x, int) and abs(x) <= 2**53:
        return str(x)
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{x} has no JSON form")
    if x == 0:
        return "0"
    # repr gives the shortest digits that round-trip, as ECMAScript requires; lay them out
    # again as ECMAScript does: value = 0.DIGITS x 10^n.
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    n = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    k, sign = len(digits), "-" if x < 0 else ""
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    return sign + digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))


def jcs(value):
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return es_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(item) for item in value) + "]"
    keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
    return "{" + ",".join(jcs(k) + ":" + jcs(value[k]) for k in keys) + "}"


prev, count = "0" * 64, 0
for count, line in enumerate(sys.stdin, start=1):
    event = json.loads(line)
    body = {k: event[k] for k in ("mission", "seq", "at", "type", "data")}
    digest = hashlib.sha256((prev + "\n" + jcs(body)).encode("utf-8")).hexdigest()
    if event["seq"] != count or event["prev_hash"] != prev or event["hash"] != digest:
        sys.exit(f"seq {event['seq']}: chain broken (expected seq {count}, hash {digest})")
    prev = digest
print(f"ok: {count} events, head {prev}")
