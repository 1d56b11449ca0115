"""Bare-broker floor: what paho-mqtt + the broker alone can do, no hub involved.

Two measuring primitives, reusable by hub scenarios (see run.py):

  latency_run(...)    sequential QoS 1 round trips; publish -> receive, one process,
                      monotonic clock, so no clock skew. Returns p50/p99 in ms.
  throughput_run(...) publish N QoS 1 messages as fast as paho's in-flight window
                      allows; the receiver checks every sequence number. Returns
                      msg/s end to end plus sent/received/lost/dup.

Both take the topic to send on, the topic to receive on, a payload maker
`payload(seq) -> bytes` and a parser `seq_of(payload) -> int | None`, so a hub
scenario can plug the real hub in between (call on a table topic in, tasks on a
pager topic out). `floor(...)` runs the fixed bare-broker set:

  one hop : A --call--> broker --> B
  two hops: A --call--> broker --> B (republishes as `tasks`, retained, like the hub)
              --> broker --> C       (table -> hub -> pager)
"""
import itertools
import os
import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import protocol
from stats import percentile

SITE = "bench"
_ids = itertools.count()
_topic_ids = itertools.count()

# --- realistic payloads ---------------------------------------------------------
# The sequence number sits at the front of each payload (JSON keeps key order), so
# the receiver can read it without decoding the whole message.
CALL_PREFIX = b'{"id":"T12-'


def call_payload(seq):
    """A table button's `call` raise, ~60 bytes. Call id T12-<seq:07d>."""
    return b'{"id":"T12-%07d","action":"raise","type":"waiter"}' % seq


def call_seq(data):
    if not data.startswith(CALL_PREFIX):
        return None
    return int(data[11:18])


_TASKS = [
    {"id": "T12-0000041", "kind": "call", "table": "T12", "type": "bill", "prio": 7,
     "age": 95, "state": "assigned", "page": 2, "note": "靠窗 window, 2 kids"},
    {"id": "T3-0000117", "kind": "call", "table": "T3", "type": "waiter", "prio": 6,
     "age": 61, "state": "acked", "page": 1},
    {"id": "K-pass-0219", "kind": "pickup", "table": "T7", "type": "food", "prio": 6,
     "age": 40, "state": "assigned", "page": 1, "note": "宫保鸡丁 x2, no peanuts"},
    {"id": "T9-0000008", "kind": "call", "table": "T9", "type": "water", "prio": 4,
     "age": 33, "state": "assigned", "page": 1},
    {"id": "T1-0000230", "kind": "call", "table": "T1", "type": "napkins", "prio": 3,
     "age": 12, "state": "assigned", "page": 0},
    {"id": "dev-T5-batt", "kind": "device", "table": "T5", "type": "battery", "prio": 1,
     "age": 600, "state": "assigned", "page": 0, "note": "battery 9%"},
]
_TASKS_REST = protocol.encode("tasks", {"seq": 0, "tasks": _TASKS})[len(b'{"seq":0'):]


def tasks_payload(seq):
    """A pager's ranked `tasks` list: 6 tasks, mixed Chinese/ASCII notes, ~800 bytes."""
    return b'{"seq":%d' % seq + _TASKS_REST


def tasks_seq(data):
    if not data.startswith(b'{"seq":'):
        return None
    return int(data[7:data.index(b",", 7)])


# Both templates must stay valid under the contract.
protocol.decode("call", call_payload(1234567))
protocol.decode("tasks", tasks_payload(1234567))
SIZES = {"call": len(call_payload(0)), "tasks": len(tasks_payload(0))}


def fresh_topics():
    """Per-measurement device ids, so a retained `tasks` from an earlier run never leaks in."""
    k = next(_topic_ids)
    return (protocol.topic(SITE, "table", "T%d" % k, "call"),
            protocol.topic(SITE, "pager", "P%d" % k, "tasks"))


# --- paho plumbing -------------------------------------------------------------
def nodelay(client):
    """TCP_NODELAY on a connected paho client, as the hub sets it (hub/bus.py): else Nagle
    holds a publish behind the client's own unacknowledged PUBACK until the broker's delayed
    ACK, up to 40 ms, and p99 measures that instead of the broker."""
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Conn:
    """One paho client with its own network thread (loop_start), QoS 1, MQTT 3.1.1."""

    def __init__(self, host, port, role, on_message=None, inflight=20, timeout=10.0):
        self.client = c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="bench-%s-%d-%d" % (role, os.getpid(), next(_ids)),
            protocol=mqtt.MQTTv311, clean_session=True)
        c.max_inflight_messages_set(inflight)
        self._connected = threading.Event()
        self._cond = threading.Condition()
        self._subacked = set()
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        if on_message is not None:
            c.on_message = on_message
        c.connect(host, port, keepalive=60)
        c.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise RuntimeError("%s: no CONNACK from %s:%d" % (role, host, port))

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if not reason_code.is_failure:
            nodelay(client)
            self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self._subacked.add(mid)
            self._cond.notify_all()

    def subscribe(self, topic, timeout=10.0):
        rc, mid = self.client.subscribe(topic, qos=1)
        with self._cond:
            ok = rc == mqtt.MQTT_ERR_SUCCESS and self._cond.wait_for(
                lambda: mid in self._subacked, timeout)
        if not ok:
            raise RuntimeError("no SUBACK for %s" % topic)

    def publish(self, topic, payload, retain=False):
        return self.client.publish(topic, payload, qos=1, retain=retain)

    def close(self):
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


def start_republisher(host, port, in_filter, out_topic, convert=None):
    """The bare 'hub' of the floor: every message on in_filter is republished on
    out_topic (QoS 1, retained like `tasks`) from inside paho's callback.
    convert(payload) -> payload; default turns a call into a tasks message."""
    convert = convert or (lambda data: tasks_payload(call_seq(data)))
    def on_message(client, userdata, msg):
        if msg.retain:
            return
        client.publish(out_topic, convert(msg.payload), qos=1, retain=True)

    conn = Conn(host, port, "relay", on_message)
    conn.subscribe(in_filter)
    return conn


# --- primitives ------------------------------------------------------------------
class _Receiver:
    def __init__(self, seq_of, n):
        self.seq_of = seq_of
        self.n = n
        self.seen = bytearray(n)
        self.t = [0] * n
        self.unique = self.dup = self.foreign = self.out_of_order = 0
        self.last = -1
        self.last_ns = 0
        self.expect = -1
        self.ev = threading.Event()
        self.done = threading.Event()

    def on_message(self, client, userdata, msg):
        now = time.monotonic_ns()
        if msg.retain:  # a stale retained message, not part of this run
            return
        try:
            seq = self.seq_of(msg.payload)
        except Exception:
            seq = None
        if seq is None or not 0 <= seq < self.n:
            self.foreign += 1
            return
        if self.seen[seq]:
            self.dup += 1
            return
        self.seen[seq] = 1
        self.t[seq] = now
        self.last_ns = now
        self.unique += 1
        if seq < self.last:
            self.out_of_order += 1
        self.last = seq
        if seq == self.expect:
            self.ev.set()
        if self.unique == self.n:
            self.done.set()


def latency_run(host, port, send_topic, payload, recv_topic, seq_of,
                n=1000, warmup=50, cap_s=30.0, timeout_s=5.0, setup=None):
    """Sequential QoS 1 round trips: publish seq, wait until it arrives on recv_topic.

    setup(): optional callable run after the receiver subscribed and before the
    first publish; returns a closer (or None). Use it to start a relay."""
    total = warmup + n
    rx = _Receiver(seq_of, total)
    dst = Conn(host, port, "dst", rx.on_message)
    src = closer = None
    sent = 0
    timed_out = False
    t_start = time.monotonic()
    try:
        dst.subscribe(recv_topic)
        closer = setup() if setup else None
        src = Conn(host, port, "src")
        t0 = [0] * total
        deadline = time.monotonic() + cap_s
        for seq in range(total):
            if time.monotonic() > deadline:
                timed_out = True
                break
            data = payload(seq)
            rx.ev.clear()
            rx.expect = seq
            t0[seq] = time.monotonic_ns()
            src.publish(send_topic, data)
            sent += 1
            if not rx.seen[seq] and not rx.ev.wait(timeout_s):
                continue  # counted as lost below
        lat = [(rx.t[s] - t0[s]) / 1e6 for s in range(warmup, sent) if rx.seen[s]]
    finally:
        for c in (src, dst):
            if c is not None:
                c.close()
        if closer is not None:
            closer.close()
    received = sum(rx.seen[warmup:sent])
    measured = max(0, sent - warmup)
    return {
        "n": measured, "received": received, "lost": measured - received,
        "dup": rx.dup, "foreign": rx.foreign, "timed_out": timed_out,
        "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else None,
        "mean_ms": sum(lat) / len(lat) if lat else None,
        "elapsed_s": round(time.monotonic() - t_start, 3),
    }


def throughput_run(host, port, send_topic, payload, recv_topic, seq_of,
                   n=10000, cap_s=30.0, setup=None, inflight=20):
    """Publish n QoS 1 messages back to back (paho keeps `inflight` unacked) and
    count them out at recv_topic; every sequence number must arrive once."""
    rx = _Receiver(seq_of, n)
    dst = Conn(host, port, "dst", rx.on_message)
    src = closer = None
    t_start = time.monotonic()
    try:
        dst.subscribe(recv_topic)
        closer = setup() if setup else None
        src = Conn(host, port, "src", inflight=inflight)
        datas = [payload(seq) for seq in range(n)]
        t0 = time.monotonic_ns()
        for data in datas:
            src.publish(send_topic, data)
        timed_out = not rx.done.wait(cap_s)
        if not timed_out:
            # a duplicate can still be on its way; give it a moment to be counted
            time.sleep(0.05)
    finally:
        for c in (src, dst):
            if c is not None:
                c.close()
        if closer is not None:
            closer.close()
    secs = (rx.last_ns - t0) / 1e9 if rx.unique else None
    return {
        "sent": n, "received": rx.unique, "lost": n - rx.unique, "dup": rx.dup,
        "foreign": rx.foreign, "out_of_order": rx.out_of_order, "timed_out": timed_out,
        "msg_s": rx.unique / secs if secs else None,
        "elapsed_s": round(time.monotonic() - t_start, 3),
    }


# --- the floor -------------------------------------------------------------------
def one_hop_latency(host, port, n, warmup, cap_s):
    call_t, _ = fresh_topics()
    return latency_run(host, port, call_t, call_payload, call_t, call_seq,
                       n=n, warmup=warmup, cap_s=cap_s)


def two_hop_latency(host, port, n, warmup, cap_s):
    call_t, tasks_t = fresh_topics()
    in_filter = protocol.wildcard(SITE, "call", "table")
    return latency_run(host, port, call_t, call_payload, tasks_t, tasks_seq,
                       n=n, warmup=warmup, cap_s=cap_s,
                       setup=lambda: start_republisher(host, port, in_filter, tasks_t))


def one_hop_throughput(host, port, n, cap_s):
    call_t, _ = fresh_topics()
    return throughput_run(host, port, call_t, call_payload, call_t, call_seq, n=n, cap_s=cap_s)


def two_hop_throughput(host, port, n, cap_s):
    call_t, tasks_t = fresh_topics()
    in_filter = protocol.wildcard(SITE, "call", "table")
    return throughput_run(host, port, call_t, call_payload, tasks_t, tasks_seq, n=n, cap_s=cap_s,
                          setup=lambda: start_republisher(host, port, in_filter, tasks_t))


def floor(host, port, sizes):
    """One repetition of the bare-broker floor. Returns (metrics, raw).

    metrics: flat dict, the keys hub scenarios are compared against:
      one_hop_p50_ms one_hop_p99_ms two_hop_p50_ms two_hop_p99_ms
      one_hop_msg_s two_hop_msg_s lost dup"""
    lat_n, warm, lat_cap = sizes["latency_n"], sizes["warmup"], sizes["latency_cap_s"]
    thr_n, thr_cap = sizes["throughput_n"], sizes["throughput_cap_s"]
    raw = {
        "one_hop_latency": one_hop_latency(host, port, lat_n, warm, lat_cap),
        "two_hop_latency": two_hop_latency(host, port, lat_n, warm, lat_cap),
        "one_hop_throughput": one_hop_throughput(host, port, thr_n, thr_cap),
        "two_hop_throughput": two_hop_throughput(host, port, thr_n, thr_cap),
    }
    m = {
        "one_hop_p50_ms": raw["one_hop_latency"]["p50_ms"],
        "one_hop_p99_ms": raw["one_hop_latency"]["p99_ms"],
        "two_hop_p50_ms": raw["two_hop_latency"]["p50_ms"],
        "two_hop_p99_ms": raw["two_hop_latency"]["p99_ms"],
        "one_hop_msg_s": raw["one_hop_throughput"]["msg_s"],
        "two_hop_msg_s": raw["two_hop_throughput"]["msg_s"],
        "lost": sum(r["lost"] for r in raw.values()),
        "dup": sum(r["dup"] for r in raw.values()),
    }
    return m, raw
