"""A simulated restaurant: the hub plus table buttons and pagers running the real
firmware (.mpy bundles) under `micropython -X heapsize=112000`. Diners press buttons
at random; simulated waiters acknowledge and complete what their pagers show.

    python firmware/simulate.py --tables 6 --pagers 3 --minutes 5
"""
import argparse
import os
import random
import shutil
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.brokers import HubProcess, free_port  # noqa: E402
from tests.simdev import SimDevice  # noqa: E402

CALL_TYPES = ("water", "napkins", "bill", "waiter")


def port_or_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            return free_port()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", type=int, default=6, help="table buttons T1..TN (default 6)")
    p.add_argument("--pagers", type=int, default=3, help="waiter pagers P1..PM (default 3)")
    p.add_argument("--minutes", type=float, default=5, help="how long to run (default 5)")
    p.add_argument("--rate", type=float, default=12, help="button presses per minute, whole floor (default 12)")
    p.add_argument("--mqtt-port", type=int, default=1883, help="broker port (a free one if taken)")
    p.add_argument("--http-port", type=int, default=8080, help="hub HTTP port (a free one if taken)")
    p.add_argument("--seed", type=int, default=None, help="random seed for a repeatable run")
    p.add_argument("--keep", action="store_true", help="keep the work dir (hub data, device logs)")
    return p.parse_args()


def say(t0, text):
    print("[%5.1fs] %s" % (time.monotonic() - t0, text), flush=True)


def floor_view(t0, hub, pagers):
    status, body = hub.get("/api/calls?limit=1000")
    counts = {}
    for c in body.get("calls", []) if status == 200 else []:
        counts[c["state"]] = counts.get(c["state"], 0) + 1
    say(t0, "calls: " + (", ".join("%s %d" % kv for kv in sorted(counts.items())) or "none yet"))
    for p in pagers:
        say(t0, "  %s | %s" % (p.id, " | ".join(p.state()["screen"])))


def main():
    args = parse_args()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="rfm-sim-")
    mqtt_port, http_port = port_or_free(args.mqtt_port), port_or_free(args.http_port)
    t0 = time.monotonic()
    hub = HubProcess(work, mqtt_port, http_port)
    devices = []
    try:
        hub.wait_ready()
        say(t0, "hub up: mqtt 127.0.0.1:%d, http://127.0.0.1:%d/api/calls (log %s)"
            % (mqtt_port, http_port, hub.log_path))
        pagers = [SimDevice("pager", "P%d" % (i + 1), mqtt_port, work, hb=10).start() for i in range(args.pagers)]
        tables = [SimDevice("table", "T%d" % (i + 1), mqtt_port, work, hb=10).start() for i in range(args.tables)]
        devices = pagers + tables
        say(t0, "%d table buttons and %d pagers running the firmware under MicroPython" % (len(tables), len(pagers)))
        deadline = t0 + args.minutes * 60
        next_view = 0.0
        steps = int(args.minutes * 60 / 0.5) + 1
        for _ in range(steps):
            now = time.monotonic()
            if now >= deadline:
                break
            if tables and rng.random() < args.rate / 120.0:
                table = rng.choice(tables)
                kind = "cancel" if rng.random() < 0.05 else rng.choice(CALL_TYPES)
                table.press(kind)
                say(t0, "diner at %s presses %s" % (table.id, kind))
            for pager in pagers:
                if rng.random() < 0.08:
                    st = pager.state()
                    screen, sel = st["screen"], st["app"]["selected"]  # "N tasks", "ok", then 4 rows
                    if len(screen) > 2 and not screen[0].startswith("0 "):
                        row = screen[2 + sel - max(0, sel - 3)]
                        action = "done" if row[12:13] == "*" else "ack"  # '*' marks an acked task
                        pager.press(action)
                        say(t0, "waiter %s presses %s on: %s" % (pager.id, action, row))
            if now >= next_view:
                floor_view(t0, hub, pagers)
                next_view = now + 10
            time.sleep(0.5)
        floor_view(t0, hub, pagers)
    except KeyboardInterrupt:
        say(t0, "stopping")
    finally:
        for d in devices:
            d.stop()
        hub.stop()
        if args.keep:
            print("work dir kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
