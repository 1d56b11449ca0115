"""Fault suite: the real hub and simulated devices (fleet.py) through the faults a restaurant
meets, each audited against the hub's database for what was lost or duplicated.

  kill        the hub SIGKILLed at random points under traffic (calls and orders), then
              started again on the same data; TRIALS times, on each broker
  restart     Mosquitto restarted under traffic (a service restart, persistence on)
  blackhole   a pager's and a table's network black-holed, then restored, through a
              loopback TCP proxy (proxy.py): the hub must mark the pager silent and move its
              tasks; the table's call sent into the void must arrive once, after
  duplicates  every raise sent twice as a wire-level QoS 1 DUP and again after the call is
              done; every act sent twice; on each broker
  slow        the hub stalled (SIGSTOP) while 1600 messages arrive for it: Mosquitto's
              default max_queued_messages 1000 silently drops the rest (shown, expected),
              the bench's config (100000) and the embedded broker lose nothing

    .venv/bin/python tests/bench/faults.py [--quick] [--trials 50] [--only kill ...]

Exit status 1 if a fault that must lose nothing lost or duplicated anything.
lost: a call the hub never stored, or left unfinished, or whose table never heard its end;
an order accepted (HTTP 2xx) the hub lost or never finished. dup: a call or order processed
twice, a task on two pagers at once. `acts_resent` counts a waiter's or cook's press the hub
plainly did not apply (the simulated waiter presses again, as a person would).
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import struct
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import fleet  # noqa: E402
import hubproc  # noqa: E402
import launch  # noqa: E402
import protocol  # noqa: E402
import restaurant  # noqa: E402
from proxy import Proxy  # noqa: E402

FAULTS = ("kill", "restart", "blackhole", "duplicates", "slow")


class Site:
    """A hub (embedded amqtt, or on a Mosquitto started here) and a fleet, in one work dir."""

    def __init__(self, broker, tables, pagers, stations=0, hb=30, keepalive=30, persist=True,
                 max_queued=launch.MAX_QUEUED, pace=((0.05, 0.3), (0.05, 0.3), (0.1, 0.5)), route=None,
                 mqtt_port=None):
        self.workdir = tempfile.mkdtemp(prefix="faults-")
        self.broker = None
        extra = restaurant.write_site(self.workdir, tables, pagers, stations)
        self.menu = restaurant.menu_doc(stations) if stations else None
        expo = (next((s["devices"][0] for s in self.menu["stations"].values() if s.get("expo")), None)
                if self.menu else None)
        self.hub = self.fleet = None
        self.posters = []
        try:
            if broker == "mosquitto":
                self.broker = launch.start("mosquitto", persist=persist, max_queued=max_queued)
                self.hub = hubproc.Hub(self.workdir, broker=(self.broker.host, self.broker.port), extra=extra)
            else:
                self.hub = hubproc.Hub(self.workdir, extra=extra, mqtt_port=mqtt_port)
            self.hub.start()
            self.fleet = fleet.Fleet("127.0.0.1", self.hub.mqtt_port, self.hub.site, tables, pagers, stations,
                                     hb=hb, keepalive=keepalive, ack_delay=pace[0], done_delay=pace[1],
                                     bump_delay=pace[2], expo=expo, route=route)
            if not self.fleet.connect(60) or not self.fleet.settle(self.hub.online, 60):
                raise RuntimeError("the site did not come up: %d of %d devices connected" % (
                    sum(d.connected for d in self.fleet.devices), len(self.fleet.devices)))
        except Exception:
            self.close()
            raise

    @property
    def loop(self):
        return self.fleet.loop

    def traffic(self, seconds, call_rate, order_rate=0.0, rng=random):
        """Calls (and orders, if the hub takes them) for `seconds`, the fleet running."""
        if order_rate and self.menu and restaurant.intake_available(self.hub):
            n = max(1, int(order_rate * seconds))
            first = 1 + sum(p.count for p in self.posters)
            self.posters.append(restaurant.OrderPoster(self.hub.http_port, self.menu, len(self.fleet.tables),
                                                       order_rate, n, workers=1, seed=rng.randint(0, 1 << 30),
                                                       first=first).start())
        end = time.monotonic() + seconds
        nxt = time.monotonic()
        while time.monotonic() < end:
            if time.monotonic() >= nxt:
                self.fleet.press_random(rng)
                nxt += rng.expovariate(call_rate)
            self.loop.step(max(0.0, min(0.02, nxt - time.monotonic())))

    def restart_hub(self, kill=True):
        """SIGKILL (or SIGTERM) the hub and start it again; the fleet keeps running meanwhile."""
        self.hub.kill() if kill else self.hub.stop()
        self.hub.launch()
        t = time.monotonic()
        if not self.loop.run_until(self.hub.healthy, 30):
            raise RuntimeError("the hub did not come back:\n%s" % self.hub.log_tail())
        return time.monotonic() - t

    def drain(self, timeout=60.0, quiet_s=5.0, pace=True):
        """Waiters and cooks at full speed (pace) until every call ended and every order was
        picked up; gives up after timeout, or once nothing has moved for quiet_s."""
        if pace:
            self.fleet.set_pace((0, 0.05), (0, 0.05), (0, 0.05))
        led = self.fleet.ledger
        end = time.monotonic() + timeout
        last, moved = None, time.monotonic()
        while time.monotonic() < end:
            orders = fleet.live_orders(self.hub.db_path) if self.posters else 0
            if self.fleet.idle() and not orders and all(p.done() for p in self.posters):
                self.loop.run_for(0.5)
                return True
            now = (led.open, led.snapshots, led.tickets, led.acts, orders)
            if now != last:
                last, moved = now, time.monotonic()
            elif time.monotonic() - moved > quiet_s:
                return False
            self.loop.run_for(0.25)
        return False

    def audit(self):
        """Stop everything; (lost, dup, details)."""
        self.loop.run_for(1.0)  # the last snapshots trail the feedback that ended their calls
        twice, zombies = fleet.shown_twice(self.fleet.pagers, self.fleet.ledger)
        led = self.fleet.ledger
        self.fleet.close()
        self.hub.stop()
        a = fleet.audit(self.hub.db_path, led)
        lost, dup = fleet.loss_counts(a, twice, zombies)
        details = {"calls": len(led.calls), "acts_resent": led.acts_resent,
                   "snapshot_seq_backwards": led.seq_backwards,
                   "audit": fleet.brief(a),
                   "shown_twice": twice[:8], "shown_after_end": zombies[:8]}
        if self.posters:
            records = [r for p in self.posters for r in p.records]
            oa = fleet.audit_orders(self.hub.db_path, records)
            lost += oa["lost"]
            dup += oa["dup"]
            details["orders"] = fleet.brief(oa)
        details["hub_errors_logged"] = self.hub.log_count(" ERROR ")
        if details["hub_errors_logged"]:
            details["hub_errors"] = [line[:300] for line in self.hub.log_lines(" ERROR ", 3)]
        return lost, dup, details

    def close(self):
        if self.fleet is not None:
            self.fleet.close()
        if self.hub is not None and self.hub.proc is not None:
            self.hub.stop()
        if self.broker is not None:
            launch.stop(self.broker)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _result(fault, broker, what, lost, dup, details, expect_loss=False):
    ok = (lost > 0) if expect_loss else (lost == 0 and dup == 0)
    return {"fault": fault, "broker": broker, "what": what, "lost": lost, "dup": dup,
            "expect_loss": expect_loss, "ok": ok, "details": details}


# --- the faults ---------------------------------------------------------------
def kill(broker, trials, rng, log):
    site = Site(broker, tables=20, pagers=4, stations=3)
    try:
        downs = []
        for i in range(trials):
            site.traffic(rng.uniform(0.3, 1.5), call_rate=20, order_rate=4, rng=rng)
            downs.append(site.restart_hub(kill=True))
            if log and (i + 1) % 10 == 0:
                log("  kill %s: %d/%d trials" % (broker, i + 1, trials))
        site.traffic(1.0, call_rate=20, rng=rng)
        drained = site.drain(20)
        lost, dup, details = site.audit()
        details.update(trials=trials, drained=drained, restart_s_max=round(max(downs), 2) if downs else None)
        return _result("kill", broker, "hub SIGKILLed %d times under traffic, restarted on the same data"
                       % trials, lost, dup, details)
    finally:
        site.close()


def restart(restarts, rng, log):
    site = Site("mosquitto", tables=20, pagers=4, stations=3, persist=True)
    try:
        for i in range(restarts):
            site.traffic(rng.uniform(0.5, 2.0), call_rate=20, order_rate=4, rng=rng)
            launch.restart(site.broker)
        site.traffic(2.0, call_rate=20, rng=rng)
        drained = site.drain()
        lost, dup, details = site.audit()
        details.update(restarts=restarts, drained=drained)
        return _result("restart", "mosquitto", "Mosquitto (persistence on) restarted %d times under traffic"
                       % restarts, lost, dup, details)
    finally:
        site.close()


def blackhole(rng, log, outage_s=8.0):
    port = launch.free_port()  # the embedded broker's, so the proxy can point at it first
    proxy = Proxy(port).start()

    def route(kind, dev):
        return "127.0.0.1", proxy.port if dev in ("T1", "P1") else port

    try:
        site = Site("amqtt", tables=10, pagers=3, hb=2, keepalive=3, route=route, pace=(None, None, None),
                    mqtt_port=port)
    except Exception:
        proxy.close()
        raise
    try:
        f, hub = site.fleet, site.hub
        t1, p1 = f.tables[0], f.pagers[0]
        for t in f.tables[1:7]:
            t.press("waiter")
        site.loop.run_until(lambda: p1.tasks, 10)
        held = [t["id"] for t in p1.tasks]
        if not held:
            raise RuntimeError("P1 was given no task, so there is nothing to move off it")
        proxy.blackhole()
        t0 = time.monotonic()
        lost_call = t1.press("bill")  # into the void
        silent = None
        while time.monotonic() - t0 < outage_s:
            site.loop.run_for(0.25)
            if silent is None and not _online(hub, "pager", "P1"):
                silent = time.monotonic() - t0
        moved = [c for c in held if _holder(hub.db_path, c) not in (None, "P1")]
        proxy.restore()
        t_restore = time.monotonic()
        back = site.loop.run_until(lambda: lost_call.t_pager is not None and p1.connected and
                                   _online(hub, "pager", "P1"), 30)
        recovered = time.monotonic() - t_restore
        f.set_pace((0, 0.05), (0, 0.05))
        for p in f.pagers:  # the waiters now act on what their pagers show
            p.review()
        drained = site.drain(30)
        lost, dup, details = site.audit()
        details.update(silent_after_s=None if silent is None else round(silent, 2), tasks_on_p1=len(held),
                       moved_off_p1=len(moved), back=back, recovered_s=round(recovered, 2), drained=drained,
                       proxy_dropped_bytes=proxy.dropped_bytes)
        stranded = len(held) - len(moved)
        if silent is None or stranded:
            lost += max(1, stranded)
            details["problem"] = "the hub did not mark P1 silent and move its tasks during the outage"
        return _result("blackhole", "amqtt", "P1 and T1 black-holed %.0f s (hb 2 s), then restored" % outage_s,
                       lost, dup, details)
    finally:
        site.close()
        proxy.close()


def _online(hub, kind, dev):
    try:
        return any(d["online"] for d in hub.get("/api/devices?kind=%s" % kind)[1]["devices"] if d["id"] == dev)
    except (OSError, ValueError, KeyError):
        return None


def _holder(db_path, call_id):
    """The pager holding a call, from the hub's database (read-only)."""
    db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True, timeout=5)
    try:
        row = db.execute("SELECT pager FROM calls WHERE id = ?", (call_id,)).fetchone()
        return row[0] if row else None
    finally:
        db.close()


def raw_dup_publish(port, topic, payload, client_id):
    """One QoS 1 PUBLISH and its wire-level DUP (same packet id, DUP flag) before any
    PUBACK, as a device resends after a lost acknowledgement. Returns PUBACKs received."""
    def pkt(kind, body):
        n, rl = len(body), b""
        while True:
            byte, n = n % 128, n // 128
            rl += bytes([byte | (0x80 if n else 0)])
            if not n:
                return bytes([kind]) + rl + body

    def s(text):
        b = text.encode("utf-8")
        return struct.pack("!H", len(b)) + b

    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(pkt(0x10, s("MQTT") + b"\x04\x02\x00\x1e" + s(client_id)))
        if sock.recv(4)[:1] != b"\x20":
            raise RuntimeError("no CONNACK")
        body = s(topic) + struct.pack("!H", 7) + payload
        sock.sendall(pkt(0x32, body) + pkt(0x3A, body))  # QoS 1, then QoS 1 + DUP
        acks, buf = 0, b""
        end = time.monotonic() + 5
        while acks < 2 and time.monotonic() < end:
            buf += sock.recv(64)
            while len(buf) >= 4 and buf[0] == 0x40:
                acks += 1
                buf = buf[4:]
        sock.sendall(b"\xe0\x00")
        return acks
    finally:
        sock.close()


def duplicates(broker, rng, log, calls=40):
    site = Site(broker, tables=calls, pagers=4, pace=(None, None, None))
    try:
        f, hub = site.fleet, site.hub
        for p in f.pagers:
            p.repeat = 2
        made = []
        for i, t in enumerate(f.tables):
            c = t.press("waiter")
            made.append(c)
            raw_dup_publish(hub.mqtt_port, t.topic("call"), protocol.encode(
                "call", {"id": c.id, "action": "raise", "type": "waiter"}), "dup-%d" % i)
            t.press("waiter")  # the diner presses again: the same id
        site.loop.run_until(lambda: all(c.t_pager for c in made), 20)
        f.set_pace((0, 0.05), (0, 0.05))
        for p in f.pagers:
            p.review()
        site.loop.run_until(f.idle, 30)
        for i, c in enumerate(made):  # a late copy of the raise, after the call is done
            raw_dup_publish(hub.mqtt_port, protocol.topic(hub.site, "table", c.table, "call"), protocol.encode(
                "call", {"id": c.id, "action": "raise", "type": "waiter"}), "late-%d" % i)
        site.loop.run_for(2.0)
        lost, dup, details = site.audit()
        details["repeats_the_hub_logged"] = {"raise (of %d sent)" % (5 * calls): hub.log_count("repeated raise"),
                                             "ack": hub.log_count("repeated ack")}
        return _result("duplicates", broker, "%d raises x4 (two presses, each with a wire DUP) + a late copy"
                       " after done; every ack and done twice" % calls, lost, dup, details)
    finally:
        site.close()


def slow(config, rng, log, stall_s=4.0):
    """config: amqtt | mosquitto-default | mosquitto-bench"""
    broker = "amqtt" if config == "amqtt" else "mosquitto"
    queue = launch.MOSQUITTO_DEFAULT_MAX_QUEUED if config == "mosquitto-default" else launch.MAX_QUEUED
    site = Site(broker, tables=200, pagers=3, persist=False, max_queued=queue, pace=(None, None, None))
    try:
        f, hub = site.fleet, site.hub
        os.kill(hub.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            for t in f.tables:
                for typ in t.TYPES:
                    t.press(typ)
            site.loop.run_for(0.5)
            for t in f.tables:
                t.cancel()
            site.loop.run_for(max(0.0, stall_s - (time.monotonic() - t0)))
            acked = sum(1 for c in f.ledger.calls.values() if c.puback)
        finally:
            os.kill(hub.pid, signal.SIGCONT)
        drained = site.drain(60, pace=False)
        lost, dup, details = site.audit()
        details.update(sent=2 * len(f.ledger.calls), raises_acked_by_broker_while_stalled=acked, drained=drained,
                       max_queued_messages=None if broker == "amqtt" else queue)
        what = {"amqtt": "embedded amqtt: the hub (and its broker) stalled %.0f s",
                "mosquitto-default": "Mosquitto max_queued_messages 1000 (its default): the hub stalled %.0f s",
                "mosquitto-bench": "Mosquitto max_queued_messages 100000 (our config): the hub stalled %.0f s"}
        return _result("slow", config, what[config] % stall_s + " while 1600 messages arrived", lost, dup,
                       details, expect_loss=config == "mosquitto-default")
    finally:
        site.close()


def run(only=FAULTS, trials=50, restarts=5, brokers=launch.BROKERS, seed=1, log=None):
    rng = random.Random(seed)
    plan = []
    if "kill" in only:
        share = [trials // len(brokers) + (1 if i < trials % len(brokers) else 0) for i in range(len(brokers))]
        plan += [("kill", b, (b, n, rng, log)) for b, n in zip(brokers, share) if n]
    if "restart" in only and "mosquitto" in brokers:
        plan.append(("restart", "mosquitto", (restarts, rng, log)))
    if "blackhole" in only:
        plan.append(("blackhole", "amqtt", (rng, log)))
    if "duplicates" in only:
        plan += [("duplicates", b, (b, rng, log)) for b in brokers]
    if "slow" in only:
        configs = (["amqtt"] if "amqtt" in brokers else []) + (
            ["mosquitto-default", "mosquitto-bench"] if "mosquitto" in brokers else [])
        plan += [("slow", c, (c, rng, log)) for c in configs]
    results = []
    for name, label, args in plan:
        t = time.monotonic()
        if log:
            log("%s %s ..." % (name, label))
        try:
            r = globals()[name](*args)
        except Exception as e:
            r = _result(name, label, "did not complete", 0, 0,
                        {"error": "%s: %s" % (type(e).__name__, e), "traceback": traceback.format_exc()})
            r["ok"] = False
        r["seconds"] = round(time.monotonic() - t, 1)
        results.append(r)
        if log:
            log("  %s %s: lost %d, dup %d%s (%.0f s)" % (r["fault"], r["broker"], r["lost"], r["dup"],
                                                         "" if r["ok"] else " NOT OK", r["seconds"]))
    return results


def format_results(results):
    lines = ["%-11s %-18s %5s %5s %-9s %s" % ("fault", "broker", "lost", "dup", "verdict", "what")]
    for r in results:
        verdict = ("shown" if r["ok"] else "NOT SHOWN") if r["expect_loss"] else ("ok" if r["ok"] else "FAIL")
        lines.append("%-11s %-18s %5d %5d %-9s %s" % (r["fault"], r["broker"], r["lost"], r["dup"], verdict,
                                                     r["what"]))
        d = r["details"]
        if d.get("error"):
            lines.append("            error: %s" % d["error"])
        if not r["ok"] or r["lost"] or r["dup"]:
            lines.append("            %s" % json.dumps({k: v for k, v in d.items() if k != "traceback"},
                                                      ensure_ascii=False)[:600])
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the CI form: 6 kills, 1 restart (about 2 minutes)")
    ap.add_argument("--trials", type=int, help="hub kills, split over the brokers (default 50, quick 6)")
    ap.add_argument("--restarts", type=int, help="Mosquitto restarts (default 5, quick 1)")
    ap.add_argument("--broker", choices=launch.BROKERS + ("both",), default="both")
    ap.add_argument("--only", action="append", choices=FAULTS, help="run only these faults (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="write the JSON results here")
    args = ap.parse_args(argv)
    trials = args.trials if args.trials is not None else (6 if args.quick else 50)
    restarts = args.restarts if args.restarts is not None else (1 if args.quick else 5)
    brokers = launch.BROKERS if args.broker == "both" else (args.broker,)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t = time.monotonic()
    results = run(args.only or FAULTS, max(0, trials), max(0, restarts), brokers, args.seed, log)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"results": results, "elapsed_s": round(time.monotonic() - t, 1), "quick": args.quick,
                       "trials": trials, "restarts": restarts}, f, indent=1, ensure_ascii=False)
    print(format_results(results))
    print("%.0f s" % (time.monotonic() - t))
    return 0 if all(r["ok"] or r["expect_loss"] for r in results) and all(
        "error" not in r["details"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
