"""Firmware memory: each device app as it ships (the compiled .mpy bundle under
`micropython -X heapsize=112000`, tests/simdev.py) through a long session against a real
Mosquitto, with a paho peer playing the hub.

  table_button  a press -> the peer answers seen, on_the_way, done -> the LED settles
  waiter_pager  the peer sends a snapshot of 1-20 tasks (Chinese notes) -> ack / next / done
                pressed -> the peer reads the act
  kitchen_display  the peer sends 1-12 tickets (Chinese dishes, some allergies) -> bump /
                next / recall pressed -> the peer reads the bump

Free heap is read over the sim control channel (`heap_free`, measured after gc.collect())
once the device is idle (outbox empty): at load (its biggest state of the cycle) and in a
reference state every cycle ends in (no open call; a fixed small snapshot), so the reference
samples compare like with like. Reported: the minimum free heap over all samples, and a leak
check over the reference samples after warm-up (leak_verdict). Each bundle's size is
reported against the 40 KB budget (the shipped bundle: esp32 board, no sim board).

    python tests/bench/firmware_mem.py [--cycles 150] [--app table_button] [--out FILE]
"""
import argparse
import contextlib
import importlib.util
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

import launch  # noqa: E402
import protocol  # noqa: E402
from stats import median  # noqa: E402

SITE = "demo"
BUDGET = 40 * 1024
WARMUP = 0.2  # share of the samples left out of the leak check
LEAK_BYTES = 512  # a drift smaller than this over the session is not called a leak
NOTES = ["靠窗 window", "2 kids, 过敏 peanuts", None, "birthday 生日", None, "VIP"]


def leak_verdict(samples, tol=LEAK_BYTES):
    """Does free heap trend down? samples: free bytes, one per cycle, in order.

    Leaves out the warm-up and calls it a leak only if both hold: the least-squares line
    falls by more than `tol` bytes over the kept cycles, and the median of each quarter is
    below the one before by at least tol / 8, i.e. the heap keeps going down. So one odd
    sample, or one step (a table growing once, fragmentation), is not a leak; a steady loss
    of a few bytes a cycle over a long session is."""
    xs = list(samples)[int(len(samples) * WARMUP):]
    n = len(xs)
    if n < 8:
        return {"leak": None, "why": "too few samples (%d)" % n}
    mx, my = (n - 1) / 2.0, sum(xs) / float(n)
    sxx = sum((i - mx) ** 2 for i in range(n))
    slope = sum((i - mx) * (y - my) for i, y in enumerate(xs)) / sxx
    drift = slope * (n - 1)
    quarters = [median(xs[k * n // 4:(k + 1) * n // 4]) for k in range(4)]
    falling = all(b <= a - tol / 8.0 for a, b in zip(quarters, quarters[1:]))
    return {"leak": drift < -tol and falling, "slope_b_per_cycle": round(slope, 3), "drift_b": round(drift, 1),
            "quarter_medians": quarters, "kept": n, "min": min(xs), "max": max(xs)}


def bundle_sizes(out_dir):
    """{app: {"shipped": bytes (esp32 board), "sim": bytes (what the tests run)}}"""
    spec = importlib.util.spec_from_file_location("fw_build", os.path.join(ROOT, "firmware", "build.py"))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    sizes = {}
    for app in build.APPS:
        shipped, total = build.build(app, os.path.join(out_dir, "esp32"), ["esp32"])
        total += os.path.getsize(os.path.join(shipped, "main.py"))
        _sim, sim_total = build.build(app, os.path.join(out_dir, "sim"), ["sim"])
        sizes[app] = {"shipped": total, "sim": sim_total, "budget": BUDGET, "within": total <= BUDGET}
    return sizes


class Peer:
    """paho playing the hub for one device: records its uplinks, answers on its down topics."""

    def __init__(self, port, kind, dev_id):
        self.kind, self.id = kind, dev_id
        self.got = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="peer-%s" % dev_id,
                             protocol=mqtt.MQTTv311)
        self.c.on_message = self._msg
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.connect("127.0.0.1", port, 30)
        self.c.loop_start()
        up = {"pager": "act", "table": "call", "kds": "bump"}[kind]
        self.c.subscribe(protocol.topic(SITE, kind, dev_id, up), 1)
        if not subscribed.wait(10):
            raise RuntimeError("peer for %s: no SUBACK" % dev_id)

    def _msg(self, client, userdata, m):
        with self.cond:
            self.got.append(json.loads(m.payload))
            self.cond.notify_all()

    def clear(self):
        with self.cond:
            self.got = []

    def wait(self, pred, timeout=10.0):
        """The newest recorded uplink for which pred holds (all recorded ones are dropped)."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [p for p in self.got if pred(p)]
                if hits:
                    self.got = []
                    return hits[-1]
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("%s: expected uplink not seen; got %r" % (self.id, self.got[-3:]))
                self.cond.wait(left)

    def send(self, msg, payload, retain=False):
        t = protocol.topic(SITE, self.kind, self.id, msg)
        self.c.publish(t, protocol.encode(msg, payload), qos=1, retain=retain).wait_for_publish(10)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@contextlib.contextmanager
def _session(kind, dev_id, port, workdir):
    """A SimDevice and its Peer; an error carries the tail of the device's own log."""
    from tests.simdev import SimDevice
    dev = SimDevice(kind, dev_id, port, workdir).start()
    peer = None
    try:
        peer = Peer(port, kind, dev_id)
        yield dev, peer
    except Exception as e:
        tail = [line for line in dev.log.splitlines() if line.strip()][-12:]
        raise RuntimeError("%s\n    %s" % (e, "\n    ".join(tail))) from None
    finally:
        if peer is not None:
            peer.close()
        dev.stop()


def _idle(dev, pred=lambda s: True, timeout=10.0):
    return dev.wait_for(lambda s: s["connected"] and s["outbox"] == 0 and pred(s), timeout)


def _settled_heap(dev, pred):
    """Free heap in a reference state: the larger of two reads 0.2 s apart, since
    MicroPython's conservative GC can keep a just-dropped buffer through one collection
    (a word left on the stack still points at it)."""
    first = _idle(dev, pred)["heap_free"]
    time.sleep(0.2)
    return max(first, _idle(dev, pred)["heap_free"])


class Presser:
    """Presses held 200 ms (a person's press). On a shared, loaded machine the unix port can
    miss a press (the debounce counts polls, not time): a press with no effect within 3 s is
    pressed again, at most twice, and counted."""

    def __init__(self, dev, peer):
        self.dev, self.peer = dev, peer
        self.retried = 0

    def press(self, name, seen):
        """Press until seen() returns something; return it."""
        for attempt in range(3):
            self.peer.clear()
            rep = self.dev.request({"press": name, "ms": 200})
            if rep != {"ok": True}:
                raise RuntimeError("press %s: %s" % (name, rep))
            try:
                return seen()
            except (TimeoutError, AssertionError):
                if attempt == 2:
                    raise
                self.retried += 1


def table_session(port, workdir, cycles, log=None):
    """Samples: (free heap in the reference state, free heap at load, presses retried)."""
    ref, load = [], []
    with _session("table", "T1", port, workdir) as (dev, peer):
        p = Presser(dev, peer)
        _idle(dev)
        types = list(protocol.CALL_TYPES)
        for i in range(cycles):
            t = types[i % len(types)]
            call = p.press(t, lambda: peer.wait(lambda m: m["action"] == "raise" and m["type"] == t, 3))
            load.append(_idle(dev, lambda s: t in s["app"]["calls"])["heap_free"])
            if i % 10 == 9:  # now and then the diner cancels instead of waiting
                p.press("cancel", lambda: peer.wait(lambda m: m["action"] == "cancel" and m["id"] == call["id"], 3))
                peer.send("feedback", {"id": call["id"], "state": "cancelled"})
            else:
                for state in ("seen", "on_the_way", "done"):
                    peer.send("feedback", {"id": call["id"], "state": state, "by": "P1"})
            ref.append(_settled_heap(dev, lambda s: not s["app"]["calls"]))
            if log and i % 50 == 49:
                log("  table_button: %d/%d cycles, heap_free %d" % (i + 1, cycles, ref[-1]))
    return ref, load, p.retried


def _tasks(i, n, rng):
    tasks = []
    for k in range(n):
        t = {"id": "T%d-%d" % (k + 1, i), "kind": "call", "table": "T%d" % (k + 1),
             "type": rng.choice(protocol.CALL_TYPES), "prio": rng.randint(1, 9),
             "age": rng.randint(0, 900), "state": "assigned", "page": 1}
        note = NOTES[(i + k) % len(NOTES)]
        if note:
            t["note"] = note
        tasks.append(t)
    return tasks


# snapshot sizes, in an order that does not grow with the button pattern (period 3): a size
# trend inside one button's samples would look like a leak
PAGER_SIZES = (1, 20, 5, 12, 8, 16, 3, 10)


def pager_session(port, workdir, cycles, log=None):
    """Each cycle: a snapshot of 1-20 tasks, a press, then the reference snapshot (3 fixed
    tasks) before the reference sample, so the samples compare like with like."""
    rng = random.Random(3)
    reference = _tasks(0, 3, random.Random(0))
    ref, load = [], []
    with _session("pager", "P1", port, workdir) as (dev, peer):
        p = Presser(dev, peer)
        _idle(dev, lambda s: s["screen"])
        for i in range(cycles):
            n = PAGER_SIZES[i % len(PAGER_SIZES)]
            seq = 2 * i + 1
            peer.send("tasks", {"seq": seq, "tasks": _tasks(i + 1, n, rng)}, retain=True)
            load.append(_idle(dev, lambda s: s["app"]["seq"] == seq)["heap_free"])
            button = ("ack", "next", "done")[i % 3]
            if button == "next":
                p.press(button, lambda: _idle(dev, lambda s: s["app"]["selected"] == 1 % n, 3))
            else:
                p.press(button, lambda: peer.wait(lambda m: m["action"] == button, 3))
            peer.send("tasks", {"seq": seq + 1, "tasks": reference}, retain=True)
            ref.append(_settled_heap(dev, lambda s: s["app"]["seq"] == seq + 1))
            if log and i % 50 == 49:
                log("  waiter_pager: %d/%d cycles, heap_free %d" % (i + 1, cycles, ref[-1]))
    return ref, load, p.retried


DISHES = ["宫保鸡丁", "麻婆豆腐", "扬州炒饭", "小笼包", "酸辣汤", "Kung Pao chicken"]


def _tickets(i, n):
    tickets = []
    for k in range(n):
        items = []
        for j in range(1 + (i + k) % 4):
            item = {"name": DISHES[(i + k + j) % len(DISHES)], "qty": 1 + j}
            if j % 2:
                item["mods"] = ["少辣"]
            items.append(item)
        t = {"id": "O%d-wok" % (i * 100 + k), "order": "O%d" % (i * 100 + k), "ch": "pos",
             "num": "A%d" % k, "table": "T%d" % (k + 1), "items": items, "age": (i + k) % 600}
        if (i + k) % 7 == 0:
            t["allergy"] = "花生过敏 peanuts"
        tickets.append(t)
    return tickets


def kds_session(port, workdir, cycles, log=None):
    """Each cycle: 1-12 tickets, bump / recall / next (the recall stack stays short), then the
    reference snapshot (2 fixed tickets) before the reference sample."""
    reference = _tickets(0, 2)
    ref, load = [], []
    with _session("kds", "wok", port, workdir) as (dev, peer):
        p = Presser(dev, peer)
        _idle(dev)
        for i in range(cycles):
            seq, n = 2 * i + 1, 1 + (i * 5) % 12
            peer.send("tickets", {"seq": seq, "station": "wok", "tickets": _tickets(i + 1, n)}, retain=True)
            s = _idle(dev, lambda s: s["app"]["seq"] == seq)
            load.append(s["heap_free"])
            button = ("bump", "recall", "next")[i % 3]
            if button == "recall" and not s["app"].get("bumped", True):
                button = "next"
            if button == "next":
                before = s["app"]["selected"]
                if n > 1:
                    p.press(button, lambda: _idle(dev, lambda s: s["app"]["selected"] != before, 3))
            else:
                acts = ("recall",) if button == "recall" else ("bump", "allergy_ack")
                p.press(button, lambda: peer.wait(lambda m: m["action"] in acts, 3))
            peer.send("tickets", {"seq": seq + 1, "station": "wok", "tickets": reference}, retain=True)
            ref.append(_settled_heap(dev, lambda s: s["app"]["seq"] == seq + 1))
            if log and i % 50 == 49:
                log("  kitchen_display: %d/%d cycles, heap_free %d" % (i + 1, cycles, ref[-1]))
    return ref, load, p.retried


SESSIONS = {"table_button": table_session, "waiter_pager": pager_session, "kitchen_display": kds_session}


def run(cycles=150, log=None, apps=None):
    """Every app (or those named) side by side, one thread each, against one Mosquitto."""
    apps = list(apps or SESSIONS)
    workdir = tempfile.mkdtemp(prefix="bench-fw-")
    report = {"heapsize": 112000, "cycles": cycles, "budget_bytes": BUDGET, "apps": {}}
    try:
        report["bundles"] = bundle_sizes(os.path.join(workdir, "build"))
        with launch.broker("mosquitto") as b:
            results, errors = {}, {}

            def one(app):
                try:
                    t = time.monotonic()
                    results[app] = (SESSIONS[app](b.port, os.path.join(workdir, app), cycles, log),
                                    time.monotonic() - t)
                except Exception as e:  # reported, and makes the benchmark fail
                    errors[app] = "%s: %s" % (type(e).__name__, e)

            threads = [threading.Thread(target=one, args=(app,)) for app in apps]
            for th in threads:
                th.start()
            for th in threads:
                th.join(cycles * 5 + 60)
        for app in apps:
            if app in errors or app not in results:
                report["apps"][app] = {"error": errors.get(app, "session did not finish")}
                continue
            (ref, load, retried), secs = results[app]
            report["apps"][app] = {"samples": len(ref), "min_free": min(ref + load), "first": ref[0],
                                   "last": ref[-1], "seconds": round(secs, 1), "presses_retried": retried,
                                   "leak_check": leak_verdict(ref), "heap": ref, "heap_at_load": load}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def failures(report):
    """What makes the benchmark fail: a session error or a leak (not the size budget)."""
    out = []
    for app, r in report["apps"].items():
        if "error" in r:
            out.append("firmware %s: %s" % (app, r["error"]))
        elif r["leak_check"]["leak"]:
            out.append("firmware %s: free heap trends down (%s)" % (app, r["leak_check"]))
    return out


def format_report(report):
    lines = ["firmware (micropython -X heapsize=%d, %d cycles each)" % (report["heapsize"], report["cycles"]),
             "%-16s %9s %9s %9s %12s %5s %9s %13s" % ("app", "min free", "first", "last", "slope B/cyc",
                                                    "leak", "bundle", "budget 40 KB")]
    for app, b in sorted(report.get("bundles", {}).items()):
        size = "%.1f KB" % (b["shipped"] / 1024.0)
        within = "within" if b["within"] else "OVER"
        r = report["apps"].get(app)
        if r is None:
            lines.append("%-16s %9s %9s %9s %12s %5s %9s %13s" % (app, "-", "-", "-", "-", "-", size, within))
        elif "error" in r:
            lines.append("%-16s ERROR %s" % (app, r["error"]))
        else:
            lc = r["leak_check"]
            lines.append("%-16s %9d %9d %9d %12.2f %5s %9s %13s" % (
                app, r["min_free"], r["first"], r["last"], lc.get("slope_b_per_cycle") or 0.0,
                {True: "LEAK", False: "no", None: "?"}[lc["leak"]], size, within))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Firmware free heap over a long simulated session, and bundle sizes.")
    ap.add_argument("--cycles", type=int, default=150, help="press/snapshot cycles per app (default 150)")
    ap.add_argument("--app", action="append", choices=sorted(SESSIONS), help="only this app (repeatable)")
    ap.add_argument("--out", help="write the JSON report here")
    args = ap.parse_args(argv)
    report = run(max(10, args.cycles), lambda m: print(m, file=sys.stderr, flush=True), args.app)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    print(format_report(report))
    bad = failures(report)
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
