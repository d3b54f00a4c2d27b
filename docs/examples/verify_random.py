#!/usr/bin/env python3
"""Verify a service-layer random result offline (CONTRACT.md §3.10), independently of
the service: needs only Python 3 and the `cryptography` package.

    python3 verify_random.py result.json [public_key_base64]

`result.json` is a RandomResult exactly as `POST /accounts/{id}/random` returned it. The
public key defaults to the result's own `public_key`; pass the one from
`GET /random/public-key` (fetched once, kept) to check the result came from the service.
Prints `valid` and exits 0, or prints the reason and exits 1.
"""
import base64
import hashlib
import hmac
import json
import struct
import sys
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def unix_micros(text):
    # RFC 3339 with 'Z' and six fractional digits, e.g. 2025-01-31T09:30:00.000000Z.
    t = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    delta = t - epoch
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def message(r, length):
    return (
        b"service-layer/random/v1" + b"\x00"
        + r["account_id"].encode("ascii") + b"\x00"
        + r["request_id"].encode("utf-8") + b"\x00"
        + struct.pack(">Q", r["counter"])
        + struct.pack(">q", unix_micros(r["created_at"]))
        + struct.pack(">I", length)
    )


def expand(signature, m, length):
    out, block = b"", 1
    while len(out) < length:
        out += hmac.new(signature, m + bytes([block]), hashlib.sha512).digest()
        block += 1
    return out[:length]


def verify(r, public_key):
    if base64.b64decode(r["public_key"], validate=True) != public_key:
        return "unknown key"
    value = base64.b64decode(r["value"], validate=True)
    if "length" in r and r["length"] != len(value):
        return "length mismatch"
    signature = base64.b64decode(r["signature"], validate=True)
    m = message(r, len(value))
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, m)
    except InvalidSignature:
        return "bad signature"
    if not hmac.compare_digest(expand(signature, m, len(value)), value):
        return "value mismatch"
    return None


def main():
    with open(sys.argv[1]) as f:
        result = json.load(f)
    key = sys.argv[2] if len(sys.argv) > 2 else result["public_key"]
    reason = verify(result, base64.b64decode(key, validate=True))
    print(reason or "valid")
    sys.exit(1 if reason else 0)


if __name__ == "__main__":
    main()
