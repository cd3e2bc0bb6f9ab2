"""The HMAC signature of boxcut's signed requests, both ways: senders sign alerts to the intake with it, and
boxcut signs the notifications it sends (worker/notify) the same way, so one receiver check fits both.

    X-Boxcut-Timestamp: <unix seconds>
    X-Boxcut-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>">
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "x-boxcut-signature"
TIMESTAMP_HEADER = "x-boxcut-timestamp"
SIGNATURE_VERSION = "v1="


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`, the value senders put in X-Boxcut-Signature."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_VERSION + digest
