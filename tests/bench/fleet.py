"""Simulated devices for the hub benchmark, the rush and the fault suite.

Hundreds of paho clients run on ONE thread: a selector drives every socket through
paho's external-loop API (loop_read / loop_write / loop_misc), so 230 devices cost one
thread and every timestamp (publish, receive) comes from the same monotonic clock.

  Table    raises calls like the firmware: one live call per type, id <table>-<n>; a
           press on a type that is still live re-sends the same id; cancel cancels all.
  Pager    acks and completes the tasks its snapshot shows, after a delay drawn from
           its policy; an act the hub has plainly not applied is counted and re-sent.
  Station  a kitchen display: records its ticket snapshots; its cook bumps each ticket
           after a delay (acknowledging an allergy first); the expo only watches.
  Listener one plain subscriber (e.g. a stand-in for the hub on a bare broker).

Every device publishes a retained status on connect (last will set) and a heartbeat,
and reconnects with backoff; paho re-sends unacknowledged QoS 1 messages after a
reconnect, as the firmware's outbox does. The Ledger records every call for audit().
"""
import heapq
import itertools
import json
import random
import selectors
import sqlite3
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import floor
import protocol

OFFLINE = protocol.encode("status", {"online": False})
LIVE = ("open", "assigned", "acked")


class Loop:
    """Timers plus one selector over every device's socket."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.devices = []
        self._timers = []
        self._n = itertools.count()
        self._writers = set()
        self._misc_at = 0.0
        self._closed = False

    def later(self, delay, fn, *args):
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._n), fn, args))

    # paho external-loop callbacks
    def _open(self, client, userdata, sock):
        self.sel.register(sock, selectors.EVENT_READ, userdata)

    def _close(self, client, userdata, sock):
        self._writers.discard(userdata)
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _want_write(self, client, userdata, sock):
        self._writers.add(userdata)
        self.sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, userdata)

    def _done_write(self, client, userdata, sock):
        self._writers.discard(userdata)
        try:
            self.sel.modify(sock, selectors.EVENT_READ, userdata)
        except (KeyError, ValueError):
            pass

    def attach(self, dev):
        c = dev.client
        c.user_data_set(dev)
        c.on_socket_open = self._open
        c.on_socket_close = self._close
        c.on_socket_register_write = self._want_write
        c.on_socket_unregister_write = self._done_write
        self.devices.append(dev)

    def step(self, max_wait=0.02):
        wait = max_wait
        if self._timers:
            wait = max(0.0, min(wait, self._timers[0][0] - time.monotonic()))
        for key, mask in self.sel.select(wait):
            c = key.data.client
            if mask & selectors.EVENT_READ:
                c.loop_read()
            if mask & selectors.EVENT_WRITE and c.socket() is not None:
                c.loop_write()
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _t, _n, fn, args = heapq.heappop(self._timers)
            fn(*args)
        for dev in list(self._writers):  # send what callbacks and timers queued, now
            if dev.client.socket() is not None:
                dev.client.loop_write()
        if now >= self._misc_at:
            self._misc_at = now + 0.5
            for dev in self.devices:
                dev.misc(now)

    def run_until(self, cond, timeout):
        """Step until cond() is true (returns True) or timeout seconds pass (False)."""
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                return False
            self.step()
        return True

    def run_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step(min(0.02, max(0.0, end - time.monotonic())))

    def close(self):
        """Disconnect every device; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        for dev in self.devices:
            dev.close()
        self.sel.close()


class Call:
    """t_sent: first press; t_pager: first snapshot showing it; final: done | cancelled as the
    table heard it."""
    __slots__ = ("id", "table", "type", "t_sent", "puback", "t_pager", "final", "t_final")

    def __init__(self, call_id, table, call_type, now):
        self.id, self.table, self.type = call_id, table, call_type
        self.t_sent, self.puback = now, False
        self.t_pager = self.final = self.t_final = None


class Ledger:
    """What the devices sent and saw, shared by the whole fleet."""

    def __init__(self):
        self.calls = {}
        self.open = 0  # calls still waiting for their final feedback
        self.acts = 0
        self.acts_resent = 0  # acts the hub plainly did not apply (then sent again)
        self.snapshots = 0
        self.seq_backwards = 0
        self.tickets = 0
        self.bumps = 0
        self.errors = []

    def latencies_ms(self, calls=None):
        calls = self.calls.values() if calls is None else calls
        return [(c.t_pager - c.t_sent) * 1000 for c in calls if c.t_pager is not None]


class Device:
    """One device's MQTT session: will, retained status on connect, heartbeat, reconnect."""

    def __init__(self, loop, ledger, kind, dev_id, host, port, site, hb=30, keepalive=30, will=True):
        self.loop, self.ledger = loop, ledger
        self.kind, self.id, self.site, self.hb = kind, dev_id, site, hb
        self.host, self.port, self.keepalive = host, port, keepalive
        self.connected = False
        self.connects = 0
        self._started = False
        self._connecting_since = None
        self._backoff = 0.2
        self._next_hb = None
        self._pending = {}  # mid -> callback on PUBACK
        self.client = c = mqtt.Client(CallbackAPIVersion.VERSION2,
                                      client_id="rfm-%s-%s-%s" % (site, kind, dev_id),
                                      protocol=mqtt.MQTTv311, clean_session=True)
        c.max_queued_messages_set(0)
        if will:
            c.will_set(self.topic("status"), OFFLINE, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.connect_async(host, port, keepalive=keepalive)
        loop.attach(self)

    def topic(self, msg):
        return protocol.topic(self.site, self.kind, self.id, msg)

    def start(self):
        self._started = True
        self._dial()

    def _dial(self):
        if not self._started:
            return
        self._connecting_since = time.monotonic()
        try:
            self.client.reconnect()
        except OSError:
            self._retry()

    def _retry(self):
        self._connecting_since = None
        self.loop.later(self._backoff * (0.5 + random.random()), self._dial)
        self._backoff = min(self._backoff * 2, 2.0)

    def misc(self, now):
        if self.client.socket() is not None:
            self.client.loop_misc()
        if self._connecting_since is not None and now - self._connecting_since > 5.0:
            self._retry()  # no CONNACK (a black hole): dial again
        if self.connected and self._next_hb is not None and now >= self._next_hb:
            self.send_status()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        floor.nodelay(client)
        self.connected = True
        self.connects += 1
        self._connecting_since = None
        self._backoff = 0.2
        for msg in protocol.SUBSCRIBES[self.kind]:
            client.subscribe(self.topic(msg), qos=1)
        self.send_status()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected = False
        if self._started:
            self._retry()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        fn = self._pending.pop(mid, None)
        if fn is not None:
            fn()

    def _on_message(self, client, userdata, msg):
        if msg.retain and not msg.payload:
            return
        name = msg.topic.rsplit("/", 1)[1]
        handler = getattr(self, "on_" + name, None)
        if handler is not None:
            try:
                handler(json.loads(msg.payload), msg)
            except Exception as e:  # a bad downlink is a finding, not a crash of the fleet
                self.ledger.errors.append("%s/%s %s: %r" % (self.kind, self.id, name, e))

    def send(self, msg, payload, on_puback=None):
        info = self.client.publish(self.topic(msg), protocol.encode(msg, payload),
                                   qos=protocol.qos(msg), retain=protocol.retain(msg))
        if on_puback is not None:
            self._pending[info.mid] = on_puback
        return info

    def send_status(self):
        self._next_hb = time.monotonic() + self.hb * (0.9 + 0.2 * random.random())
        self.send("status", {"online": True, "fw": "bench", "hb": self.hb, "battery": 90, "rssi": -50})

    def close(self):
        self._started = False
        if self.client.socket() is not None:
            try:
                self.client.disconnect()
                self.client.loop_write()
            except Exception:
                pass
            sock = self.client.socket()
            if sock is not None:
                self.loop._close(self.client, self, sock)
                sock.close()


class Table(Device):
    TYPES = protocol.CALL_TYPES

    def __init__(self, loop, ledger, dev_id, host, port, site, **kw):
        Device.__init__(self, loop, ledger, "table", dev_id, host, port, site, **kw)
        self.n = 0
        self.live = {}  # type -> Call

    def free_types(self):
        return [t for t in self.TYPES if t not in self.live]

    def press(self, call_type):
        """A diner's press: a new call, or the live call of that type sent again."""
        now = time.monotonic()
        call = self.live.get(call_type)
        if call is None:
            self.n += 1
            call = Call("%s-%d" % (self.id, self.n), self.id, call_type, now)
            self.live[call_type] = call
            self.ledger.calls[call.id] = call
            self.ledger.open += 1
        self.send("call", {"id": call.id, "action": "raise", "type": call_type},
                  on_puback=lambda: setattr(call, "puback", True))
        return call

    def cancel(self):
        for call_type in list(self.live):
            call = self.live.pop(call_type)
            self.send("call", {"id": call.id, "action": "cancel"})

    def on_feedback(self, p, msg):
        call = self.ledger.calls.get(p["id"])
        if call is None or call.table != self.id:
            self.ledger.errors.append("table %s: feedback for a call it never made: %s" % (self.id, p))
            return
        if p["state"] in ("done", "cancelled") and call.final is None:
            call.final, call.t_final = p["state"], time.monotonic()
            self.ledger.open -= 1
            if self.live.get(call.type) is call:
                del self.live[call.type]


class Pager(Device):
    """ack_delay / done_delay: (lo, hi) seconds, or None to leave tasks alone."""

    STALE_S = 3.0

    def __init__(self, loop, ledger, dev_id, host, port, site, ack_delay=(0, 0), done_delay=(0, 0),
                 **kw):
        Device.__init__(self, loop, ledger, "pager", dev_id, host, port, site, **kw)
        self.ack_delay, self.done_delay = ack_delay, done_delay
        self.repeat = 1  # each act sent this many times (duplicate deliveries)
        self.seq = None
        self.tasks = []
        self.sent = {}  # (task id, page, action) -> time sent

    def on_tasks(self, p, msg):
        now = time.monotonic()
        led = self.ledger
        led.snapshots += 1
        if self.seq is not None and p["seq"] < self.seq and not msg.retain:
            led.seq_backwards += 1
        self.seq = p["seq"]
        self.tasks = p["tasks"]
        for t in self.tasks:
            call = led.calls.get(t["id"])
            if call is not None and call.t_pager is None:
                call.t_pager = now
        self.review(now)

    def review(self, now=None):
        """The waiter looks at the screen: plan an ack or done for each task shown."""
        now = time.monotonic() if now is None else now
        led = self.ledger
        for t in self.tasks:
            action = {"assigned": "ack", "acked": "done"}.get(t["state"])
            policy = self.ack_delay if action == "ack" else self.done_delay
            if action is None or policy is None:
                continue
            key = (t["id"], t["page"], action)
            sent = self.sent.get(key)
            if sent is None:
                self.sent[key] = 0  # planned: the act goes out after the delay
                self.loop.later(random.uniform(*policy), self._act, t["id"], t["page"], action)
            elif sent > 0 and now - sent > self.STALE_S:
                led.acts_resent += 1
                self.sent[key] = now
                self._act(t["id"], t["page"], action)

    def _act(self, task_id, page, action):
        if not any(t["id"] == task_id for t in self.tasks):
            return  # moved away or cancelled meanwhile
        self.sent[(task_id, page, action)] = time.monotonic()
        self.ledger.acts += 1
        for _ in range(self.repeat):
            self.send("act", {"id": task_id, "action": action})


class Station(Device):
    """A kitchen display; with bump_delay (lo, hi) its cook bumps each ticket after that long
    (acknowledging an allergy first). An expo display (bump_delay None) only watches."""

    STALE_S = 3.0

    def __init__(self, loop, ledger, dev_id, host, port, site, bump_delay=None, **kw):
        Device.__init__(self, loop, ledger, "kds", dev_id, host, port, site, **kw)
        self.bump_delay = bump_delay
        self.seq = None
        self.tickets = []
        self.first_seen = {}  # ticket id -> monotonic time it first showed
        self.sent = {}  # (ticket id, action) -> time sent

    def on_tickets(self, p, msg):
        now = time.monotonic()
        self.seq = p["seq"]
        self.tickets = p["tickets"]
        self.ledger.tickets += 1
        for t in self.tickets:
            self.first_seen.setdefault(t["id"], now)
            if self.bump_delay is None:
                continue
            action = "allergy_ack" if t.get("allergy") and not t.get("allergy_ack") else "bump"
            sent = self.sent.get((t["id"], action))
            if sent is None:
                self.sent[(t["id"], action)] = 0  # planned
                self.loop.later(random.uniform(*self.bump_delay), self._bump, t["id"], action)
            elif sent > 0 and now - sent > self.STALE_S:
                self.ledger.acts_resent += 1
                self._bump(t["id"], action)

    def _bump(self, ticket_id, action):
        if not any(t["id"] == ticket_id for t in self.tickets):
            return
        self.sent[(ticket_id, action)] = time.monotonic()
        self.ledger.bumps += 1
        self.send("bump", {"id": ticket_id, "action": action})


class Listener(Device):
    """A plain subscriber to one filter, counting messages."""

    def __init__(self, loop, ledger, name, host, port, site, topic_filter):
        Device.__init__(self, loop, ledger, "hub", name, host, port, site, will=False)
        self.filter = topic_filter
        self.count = 0
        self.client.on_message = self._count

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            self.connected = True
            self.connects += 1
            self._connecting_since = None
            client.subscribe(self.filter, qos=1)

    def _count(self, client, userdata, msg):
        self.count += 1

    def misc(self, now):
        if self.client.socket() is not None:
            self.client.loop_misc()


class Fleet:
    """tables T1..Tn, pagers P1..Pm, stations S1..Sk against one broker."""

    def __init__(self, host, port, site, tables=200, pagers=30, stations=0, hb=30,
                 ack_delay=(0, 0), done_delay=(0, 0), bump_delay=(0, 0), expo=None, keepalive=30,
                 route=None):
        """expo: the id of the display that only watches; route(kind, id) -> (host, port)
        sends some devices elsewhere (through a proxy)."""
        self.loop = Loop()
        self.ledger = Ledger()
        where = route or (lambda kind, dev: (host, port))
        L, D = self.loop, self.ledger
        self.tables = [Table(L, D, "T%d" % i, *where("table", "T%d" % i), site, hb=hb,
                             keepalive=keepalive) for i in range(1, tables + 1)]
        self.pagers = [Pager(L, D, "P%d" % i, *where("pager", "P%d" % i), site, ack_delay=ack_delay,
                             done_delay=done_delay, hb=hb, keepalive=keepalive)
                       for i in range(1, pagers + 1)]
        self.stations = [Station(L, D, "S%d" % i, *where("kds", "S%d" % i), site, hb=hb,
                                 bump_delay=None if "S%d" % i == expo else bump_delay,
                                 keepalive=keepalive) for i in range(1, stations + 1)]

    @property
    def devices(self):
        return self.tables + self.pagers + self.stations

    def connect(self, timeout=60.0, batch=25):
        """Connect everyone, batch by batch (a restaurant powering up); True if all are up."""
        devs = self.devices
        for i in range(0, len(devs), batch):
            for d in devs[i:i + batch]:
                d.start()
            self.loop.run_until(lambda: all(d.connected for d in devs[i:i + batch]), timeout)
        return self.loop.run_until(lambda: all(d.connected for d in devs), timeout)

    def settle(self, online, timeout=30.0):
        """Keep running until online() (e.g. the hub's count of devices online) covers the
        whole fleet; False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.loop.run_for(0.3)
            try:
                if online() >= len(self.devices):
                    return True
            except (OSError, ValueError):
                pass
        return False

    def set_pace(self, ack_delay, done_delay, bump_delay=None):
        """How long waiters take to ack and complete, and cooks to bump, from now on."""
        for p in self.pagers:
            p.ack_delay, p.done_delay = ack_delay, done_delay
        for s in self.stations:
            if s.bump_delay is not None and bump_delay is not None:
                s.bump_delay = bump_delay

    def ticket_seen(self):
        """{ticket id: first time any display showed it}"""
        out = {}
        for s in self.stations:
            for tid, t in s.first_seen.items():
                out[tid] = min(t, out.get(tid, t))
        return out

    def all_connected(self):
        return all(d.connected for d in self.devices)

    def press_random(self, rng=random):
        """One press on a random table and a type it has free; None if every table is busy."""
        for _ in range(20):
            t = rng.choice(self.tables)
            free = t.free_types()
            if free:
                return t.press(rng.choice(free))
        return None

    def idle(self):
        """No call still waiting for its final feedback."""
        return self.ledger.open == 0

    def close(self):
        self.loop.close()


def audit(db_path, ledger, calls=None):
    """Compare what the devices sent with what the hub stored.

    lost: a call a table raised (and the broker acknowledged) that the hub has no record
          of, or that is still live at the end although every pager kept working, or
          whose table never heard its final state.
    dup:  a call shown on two pagers at once, a task still shown after its call ended,
          a call the hub processed twice (_processed_twice), a call id the hub holds that no
          table sent."""
    calls = list(ledger.calls.values()) if calls is None else calls
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        stored = {r["id"]: dict(r) for r in db.execute("SELECT id, state, pager FROM calls")}
        ids = {r["id"]: r["call_id"] for r in db.execute("SELECT id, call_id FROM call_ids")}
        events = db.execute("SELECT call_id, event FROM call_events ORDER BY n").fetchall()
    finally:
        db.close()
    twice = _processed_twice(events)
    ours = {c.id for c in ledger.calls.values()}
    out = {"calls": len(calls), "missing": [], "stuck": [], "no_final_feedback": [],
           "unacked_by_broker": sum(1 for c in calls if not c.puback),
           "processed_twice": sorted(twice), "phantom": sorted(set(ids) - ours)}
    for c in calls:
        row = stored.get(ids.get(c.id))
        if row is None:
            out["missing"].append(c.id)
        elif row["state"] in LIVE:
            out["stuck"].append(c.id)
        elif c.final is None:
            out["no_final_feedback"].append(c.id)
    return out


def _processed_twice(events):
    """Calls raised, done or cancelled twice, or acked twice with no new assignment between
    (a call moved to another pager is rightly acked again there)."""
    seen, acked, out = {}, set(), set()
    for call_id, event in events:
        if event in ("assigned", "moved", "unassigned"):
            acked.discard(call_id)
        elif event == "acked":
            if call_id in acked:
                out.add(call_id)
            acked.add(call_id)
        elif event in ("raised", "done", "cancelled"):
            if (call_id, event) in seen:
                out.add(call_id)
            seen[(call_id, event)] = True
    return sorted(out)


def shown_twice(pagers, ledger):
    """Task ids on two pagers' latest snapshots at once, and tasks shown for ended calls."""
    seen, twice, zombies = {}, [], []
    for p in pagers:
        for t in p.tasks:
            if t["id"] in seen:
                twice.append(t["id"])
            seen[t["id"]] = p.id
            call = ledger.calls.get(t["id"])
            if call is not None and call.final is not None:
                zombies.append(t["id"])
    return twice, zombies


def brief(a):
    """An audit for a report: counts as they are, each non-empty list as its length and
    a few examples."""
    return {k: v if isinstance(v, int) else {"n": len(v), "e.g.": v[:5]} for k, v in a.items() if v}


def loss_counts(a, twice=(), zombies=()):
    """(lost, dup) totals of an audit() plus shown_twice() results."""
    lost = len(a["missing"]) + len(a["stuck"]) + len(a["no_final_feedback"])
    dup = len(a["processed_twice"]) + len(a["phantom"]) + len(twice) + len(zombies)
    return lost, dup


def rss_kb(pid):
    """VmRSS and VmHWM (peak) of a process in kB, from /proc."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out.get("VmRSS"), out.get("VmHWM")



def audit_orders(db_path, records, channel="bench"):
    """Orders posted (OrderPoster records) against the hub's database.

    lost: a post refused (an HTTP error), an accepted order the hub has no record of, or one
          not picked up at the end; dup: an order the hub created or picked up twice, or a
          fresh ref answered as already known. A post that got no answer at all (the hub was
          down) is counted as unreachable: its channel would deliver it again."""
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        stored = {r["ref"]: dict(r) for r in db.execute(
            "SELECT id, ref, status FROM orders WHERE channel = ?", (channel,))}
        twice = [r["order_id"] for r in db.execute(
            "SELECT order_id, event, COUNT(*) AS times FROM order_events WHERE event IN"
            " ('received', 'picked_up') GROUP BY order_id, event HAVING times > 1")]
    finally:
        db.close()
    out = {"posted": len(records), "unreachable": 0, "refused": [], "missing": [], "not_picked_up": [],
           "answered_known": [], "processed_twice": twice}
    for r in records:
        if not isinstance(r["status"], int):  # no answer (hub down): the channel retries it
            out["unreachable"] += 1
            continue
        if r["status"] not in (200, 201):
            out["refused"].append("%s: %s %s" % (r["ref"], r["status"], r.get("error") or ""))
            continue
        if r["status"] != 201:
            out["answered_known"].append(r["ref"])
        row = stored.get(r["ref"])
        if row is None:
            out["missing"].append(r["ref"])
        elif row["status"] != "picked_up":
            out["not_picked_up"].append("%s %s" % (row["id"], row["status"]))
    out["lost"] = len(out["refused"]) + len(out["missing"]) + len(out["not_picked_up"])
    out["dup"] = len(out["answered_known"]) + len(twice)
    return out


def live_orders(db_path):
    """Orders not finished yet (received, cooking, ready) in the hub's database, or None."""
    try:
        db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM orders WHERE status IN ('received', 'cooking', 'ready')"
                              ).fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return None
