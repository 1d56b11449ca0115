"""The bouncer: what the hub lets in from devices over MQTT, before the call desk sees it.

Which device sent a message is its topic's device, and the broker guarantees that a
device publishes only on its own topics (hub/access.py). Everything inside the payload
is a claim the hub checks here, in the MQTT thread:

- Rate: each device has a token bucket (`rate` messages a second, `burst` at once; the
  burst absorbs the backlog a broker delivers after the hub was away). A device over it
  is flooding: the excess is dropped, a warning is logged, the hub's error topic says so
  once, and the device is flagged ("flood" in /api/devices) until it has been quiet for
  QUIET_S. With broker auth on, the hub also quarantines it at the broker meanwhile
  (hub.access.Access.quarantine), so its flood stops costing the hub anything, and the
  embedded broker holds each device to twice these limits itself (hub.access.DeviceTopics)
  and closes the connection of one sending over PACKETS_S packets a second (hub.broker).
- Claims: a table makes its call ids as "<table>-<n>" (protocol/SPEC.md), so a call id
  that is not the sending table's own is refused: no table can raise, remind or cancel
  under another table's ids.
"""
import logging
import threading
import time

import protocol

log = logging.getLogger(__name__)

RATE = 20.0  # messages a second, sustained
BURST = 200
QUIET_S = 30
PACKETS_S = 1000  # MQTT packets a second after which the embedded broker closes a device's connection
MAX_TRACKED = 5000  # buckets kept; beyond this the full (idle) ones are forgotten


class _Bucket:
    __slots__ = ("tokens", "at", "dropped", "since", "last_drop")

    def __init__(self, burst, now):
        self.tokens = burst
        self.at = now
        self.dropped = 0
        self.since = None  # when the current flood began
        self.last_drop = None


class Bouncer:
    def __init__(self, rate=RATE, burst=BURST, clock=time.monotonic, where="hub", on_flood=None):
        """rate 0 turns the rate limit off; where: who drops, for the log; on_flood(kind,
        device, flooding) is told when a flood starts and ends, from any thread."""
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.where = where
        self.on_flood = on_flood
        self._buckets = {}
        self._lock = threading.Lock()

    def admit(self, kind, device):
        """None if the device may send one more message now, else why not. The reason is
        returned only for the first message dropped in a flood, "" for the rest."""
        if not self.rate:
            return None
        now = self.clock()
        ended = started = False
        with self._lock:
            b = self._buckets.get((kind, device))
            if b is None:
                if len(self._buckets) >= MAX_TRACKED:
                    self._forget(now)
                b = self._buckets[(kind, device)] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
            if b.since is not None and now - b.last_drop > QUIET_S:
                ended = self._end(kind, device, b)
            if b.tokens >= 1:
                b.tokens -= 1
                verdict = None
            else:
                b.dropped += 1
                b.last_drop = now
                started = b.since is None
                if started:
                    b.since = now
                verdict = "rate: %s/%s sends over %g messages a second; the excess is dropped" % (
                    kind, device, self.rate) if started else ""
        if ended:
            self._tell(kind, device, False)
        if started:
            log.warning("device %s/%s is flooding the %s (over %g messages a second, burst %d): excess dropped "
                        "until it is quiet for %d s", kind, device, self.where, self.rate, self.burst, QUIET_S)
            self._tell(kind, device, True)
        return verdict

    def expire(self):
        """End the floods quiet for QUIET_S; the hub's clock calls this, since a quarantined
        device sends the hub nothing that would end its flood in admit()."""
        now = self.clock()
        with self._lock:
            over = [key for key, b in self._buckets.items() if b.since is not None and now - b.last_drop > QUIET_S]
            for key in over:
                self._end(key[0], key[1], self._buckets[key])
        for kind, device in over:
            self._tell(kind, device, False)

    def _end(self, kind, device, b):
        log.info("device %s/%s no longer flooding the %s: %d messages dropped", kind, device, self.where, b.dropped)
        b.since, b.dropped = None, 0
        return True

    def _tell(self, kind, device, flooding):
        if self.on_flood is not None:
            try:
                self.on_flood(kind, device, flooding)
            except Exception:
                log.exception("flood handler failed")

    def _forget(self, now):
        self._buckets = {k: b for k, b in self._buckets.items()
                         if b.since is not None or b.tokens + (now - b.at) * self.rate < self.burst}

    def flags(self, kind, device):
        """{"flood": {dropped, for_s}} while the device is flagged, else {}."""
        with self._lock:
            b = self._buckets.get((kind, device))
            if b is None or b.since is None or self.clock() - b.last_drop > QUIET_S:
                return {}
            return {"flood": {"dropped": b.dropped, "for_s": round(self.clock() - b.since, 1)}}

    @staticmethod
    def claims(kind, device, message, payload):
        """Raise ProtocolError if the payload claims what its sender cannot own."""
        if message == "call":
            mine = device + "-"
            cid = payload["id"]
            n = cid[len(mine):]
            if not (cid.startswith(mine) and n.isascii() and n.isdigit()):
                raise protocol.ProtocolError("id", "%r is not one of table %s's call ids (%s<n>)" % (cid, device, mine))
