"""The outbound status webhook: every order status change, POSTed to the POS or channel.

Each status is written to a durable outbox table in the same transaction as the change
itself, so a crash or restart loses nothing; a sender thread delivers the outbox in order,
retrying with exponential backoff. Every attempt is signed afresh:

    X-RFM-Timestamp: <unix seconds>
    X-RFM-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
    X-RFM-Delivery:  <event id, the same on every retry: the receiver's de-duplication key>

protocol/ORDERS.md documents the body and how to verify it.
"""
import datetime
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request

from hub import store as _store

log = logging.getLogger(__name__)

TIMEOUT_S = 5
POLL_S = 0.5
BACKOFF_MIN_S = 1
BACKOFF_MAX_S = 300
GIVE_UP_S = 86400
RETRYABLE = (408, 429)  # 4xx codes worth retrying; other 4xx are final

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_outbox (
    n            INTEGER PRIMARY KEY AUTOINCREMENT,
    event        INTEGER NOT NULL,          -- order_events.n, sent as X-RFM-Delivery
    body         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    delivered_at REAL,
    failed_at    REAL,                      -- given up: a final 4xx, or a day of failures
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox (delivered_at, failed_at, n);
"""
_store.EXTRA_SCHEMAS.append(SCHEMA)


def iso(t):
    stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign(secret, timestamp, body):
    """The X-RFM-Signature value for a body sent at timestamp (unix seconds)."""
    mac = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class StatusWebhook:
    def __init__(self, store, url, secret, clock=time.time):
        self.store = store
        self.url = url
        self.secret = secret
        self.clock = clock
        self._stop = threading.Event()
        self._thread = None

    def enqueue(self, event_id, message, now):
        """Called inside the hub's transaction: the delivery commits with the status change."""
        body = dict(message, id=event_id, event="order.status", at=iso(now))
        self.store.insert("webhook_outbox", {"event": event_id, "created_at": now, "next_at": now,
                                             "body": json.dumps(body, ensure_ascii=False, separators=(",", ":"))})

    def pending(self):
        return self.store.one("SELECT COUNT(*) AS n FROM webhook_outbox WHERE delivered_at IS NULL"
                              " AND failed_at IS NULL")["n"]

    def start(self):
        left = self.pending()
        if left:
            log.info("status webhook: %d deliveries waiting in the outbox", left)
        self._thread = threading.Thread(target=self._run, name="hub-webhook", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(TIMEOUT_S + 1)

    def _run(self):
        while not self._stop.is_set():
            try:
                wait = self.deliver_next()
            except Exception:
                log.exception("status webhook: sender failed; trying again")
                wait = BACKOFF_MIN_S
            if wait:
                self._stop.wait(wait)

    def deliver_next(self):
        """Try the oldest undelivered status (in order: later ones wait); return seconds to wait."""
        row = self.store.one("SELECT * FROM webhook_outbox WHERE delivered_at IS NULL AND failed_at IS NULL"
                             " ORDER BY n LIMIT 1")
        if row is None:
            return POLL_S
        now = self.clock()
        if row["next_at"] > now:
            return min(row["next_at"] - now, POLL_S)
        error, final = self._post(row)
        attempts = row["attempts"] + 1
        now = self.clock()
        if error is None:
            self.store.update("webhook_outbox", {"n": row["n"]}, {"attempts": attempts, "delivered_at": now,
                                                                   "last_error": None})
            log.info("status webhook: event %d delivered (attempt %d)", row["event"], attempts)
            return 0
        if final or now - row["created_at"] > GIVE_UP_S:
            self.store.update("webhook_outbox", {"n": row["n"]}, {"attempts": attempts, "failed_at": now,
                                                                   "last_error": error})
            log.error("status webhook: event %d given up after %d attempts: %s", row["event"], attempts, error)
            return 0
        delay = min(BACKOFF_MIN_S * 2 ** (attempts - 1), BACKOFF_MAX_S)
        self.store.update("webhook_outbox", {"n": row["n"]}, {"attempts": attempts, "next_at": now + delay,
                                                               "last_error": error})
        log.warning("status webhook: event %d attempt %d failed (%s); retrying in %d s", row["event"], attempts,
                    error, delay)
        return 0

    def _post(self, row):
        """Send one delivery; return (error or None, whether the error is final)."""
        body = row["body"].encode("utf-8")
        stamp = int(self.clock())
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": "rfm-hub",
            "X-RFM-Timestamp": str(stamp), "X-RFM-Signature": sign(self.secret, stamp, body),
            "X-RFM-Delivery": str(row["event"])})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                response.read()
            return None, False
        except urllib.error.HTTPError as exc:
            return "HTTP %d" % exc.code, 400 <= exc.code < 500 and exc.code not in RETRYABLE
        except (OSError, ValueError) as exc:
            return str(getattr(exc, "reason", exc)), False
