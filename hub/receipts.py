"""Receipts of the signed order webhooks the hub accepted: each delivery is applied once.

Deliveroo and Shopify sign no timestamp, so a captured delivery stays valid for ever; the
hub keeps the signature of every delivery it applied (in the same transaction as the
order) for WINDOW_S and answers a second delivery with the same signature
`200 duplicate` without applying it. The channels retry a delivery whose answer they
did not get with the same body and signature, so the answer is a success they stop on.
WINDOW_S covers Shopify's retries (48 h); older replays are still no-ops, caught by the
order's (channel, ref) and version. Toast and the hub's own API also sign a timestamp and
are held to their window (hub/channels.py).
"""
import hashlib

from hub import store as _store

WINDOW_S = 48 * 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_receipts (
    channel TEXT NOT NULL,
    digest  TEXT NOT NULL,                -- sha256 of the delivery's verified signature
    at      REAL NOT NULL,
    result  TEXT NOT NULL,                -- what applying it did
    PRIMARY KEY (channel, digest)
);
CREATE INDEX IF NOT EXISTS webhook_receipts_by_time ON webhook_receipts (at);
"""
_store.EXTRA_SCHEMAS.append(SCHEMA)


def _digest(signature):
    return hashlib.sha256(signature.encode("utf-8")).hexdigest()


class Receipts:
    def __init__(self, store):
        self.store = store

    def once(self, now, channel, signature, apply):
        """apply() unless this signature was applied within WINDOW_S; call inside the event
        that applies it, so the receipt commits with the order. Returns apply()'s result, or
        a `duplicate` result for a replay."""
        self.store.run("DELETE FROM webhook_receipts WHERE at < ?", (now - WINDOW_S,))
        digest = _digest(signature)
        seen = self.store.one("SELECT at, result FROM webhook_receipts WHERE channel = ? AND digest = ?",
                              (channel, digest))
        if seen:
            return {"result": "duplicate", "channel": channel,
                    "why": "replay: this signed delivery was already applied %d s ago (%s)"
                           % (now - seen["at"], seen["result"])}
        result = apply()
        self.store.insert("webhook_receipts", {"channel": channel, "digest": digest, "at": now,
                                               "result": result["result"]})
        return result
