"""Dinner-rush simulation: the real hub, 200 tables, 30 pagers and 6 kitchen displays at ten
times a busy night's call and order rates, for a set number of minutes; then everything is
drained and audited against the hub's database. Exit status 1 if any call or order was lost
or duplicated (expected: 0 and 0).

    .venv/bin/python tests/bench/rush.py [--minutes 2] [--broker amqtt|mosquitto]

A busy night (the defaults): each table calls 6 times an hour, the kitchen takes 300 orders
an hour. Waiters ack in 1-4 s and finish in 2-8 s, cooks bump in 2-6 s, runners carry the
food; 10% of presses repeat a call still open, 5% of calls are cancelled by the diner.
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import fleet  # noqa: E402
import hubproc  # noqa: E402
import launch  # noqa: E402
import restaurant  # noqa: E402
from stats import percentile  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=2.0, help="length of the rush (default 2)")
    ap.add_argument("--tables", type=int, default=200, help="table buttons (default 200)")
    ap.add_argument("--pagers", type=int, default=30, help="waiter pagers (default 30)")
    ap.add_argument("--stations", type=int, default=6, help="kitchen displays, the last one the expo (default 6)")
    ap.add_argument("--factor", type=float, default=10.0, help="times a busy night's rates (default 10)")
    ap.add_argument("--calls-per-table-hour", type=float, default=6.0,
                    help="calls per table per hour on a busy night (default 6)")
    ap.add_argument("--orders-per-hour", type=float, default=300.0,
                    help="orders per hour on a busy night (default 300)")
    ap.add_argument("--broker", choices=launch.BROKERS, default="amqtt",
                    help="the hub's embedded amqtt (default) or a Mosquitto started here")
    ap.add_argument("--drain-s", type=float, default=90.0,
                    help="after the rush, how long everything may take to finish (default 90)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="write the JSON report here")
    args = ap.parse_args(argv)
    if args.minutes <= 0 or min(args.tables, args.pagers) < 1 or args.stations < 0:
        ap.error("--minutes, --tables and --pagers must be positive, --stations at least 0")
    return args


def rush(args, log):
    rng = random.Random(args.seed)
    seconds = args.minutes * 60
    call_rate = args.tables * args.calls_per_table_hour * args.factor / 3600.0
    order_rate = args.orders_per_hour * args.factor / 3600.0 if args.stations else 0.0
    workdir = tempfile.mkdtemp(prefix="rush-")
    extra = restaurant.write_site(workdir, args.tables, args.pagers, args.stations)
    menu = restaurant.menu_doc(args.stations) if args.stations else None
    expo = next((s["devices"][0] for s in menu["stations"].values() if s.get("expo")), None) if menu else None
    report = {"args": vars(args), "call_rate": call_rate, "order_rate": order_rate, "errors": []}
    broker = None
    try:
        if args.broker == "mosquitto":
            broker = launch.start("mosquitto")
            hub = hubproc.Hub(workdir, broker=(broker.host, broker.port), extra=extra)
        else:
            hub = hubproc.Hub(workdir, extra=extra)
        hub.start()
        f = fleet.Fleet("127.0.0.1", hub.mqtt_port, hub.site, args.tables, args.pagers, args.stations,
                        ack_delay=(1, 4), done_delay=(2, 8), bump_delay=(2, 6), expo=expo)
        poster = None
        try:
            if not f.connect(60):
                raise RuntimeError("only %d of %d devices connected" % (sum(d.connected for d in f.devices),
                                                                        len(f.devices)))
            if not f.settle(hub.online, 60):
                raise RuntimeError("the hub never saw every device online")
            log("rush: %d tables, %d pagers, %d displays on %s; %.2f calls/s, %.2f orders/s for %.1f min"
                % (args.tables, args.pagers, args.stations, args.broker, call_rate, order_rate, args.minutes))
            orders = order_rate > 0 and restaurant.intake_available(hub)
            if order_rate > 0 and not orders:
                report["errors"].append("orders: POST /api/orders is not there (intake not landed)")
            if orders:
                poster = restaurant.OrderPoster(hub.http_port, menu, args.tables, order_rate,
                                                max(1, int(order_rate * seconds)), workers=2,
                                                seed=args.seed).start()
            t0 = time.monotonic()
            end = t0 + seconds
            nxt = t0
            report_at = t0 + 10
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= nxt:
                    nxt += rng.expovariate(call_rate)
                    open_ = [c for t in f.tables for c in t.live.values()] if rng.random() < 0.1 else []
                    if open_:  # a diner presses again on a call still open: same id
                        call = rng.choice(open_)
                        next(t for t in f.tables if t.id == call.table).press(call.type)
                    else:
                        call = f.press_random(rng)
                        if call is not None and rng.random() < 0.05:
                            table = next(t for t in f.tables if t.id == call.table)
                            f.loop.later(rng.uniform(1, 5), table.cancel)
                if now >= report_at:
                    report_at += 10
                    lat = f.ledger.latencies_ms()
                    log("  %3.0f s: %d calls (%d open), p99 press->pager %.1f ms, %d orders posted, hub %.0f MB"
                        % (now - t0, len(f.ledger.calls), f.ledger.open, percentile(lat, 99) or 0,
                           len(poster.records) if poster else 0, fleet.rss_kb(hub.pid)[0] / 1024.0))
                f.loop.step(max(0.0, min(0.02, nxt - time.monotonic())))
            log("rush over; draining (up to %.0f s)" % args.drain_s)
            drained = f.loop.run_until(lambda: f.idle() and (poster is None or poster.done()), args.drain_s)
            drain_end = time.monotonic() + args.drain_s
            while poster is not None and time.monotonic() < drain_end and fleet.live_orders(hub.db_path):
                f.loop.run_for(1.0)
            f.loop.run_for(1.0)
            lat = f.ledger.latencies_ms()
            slow = sorted((c for c in f.ledger.calls.values() if c.t_pager), key=lambda c: c.t_sent - c.t_pager)
            report["slowest_calls"] = [{"id": c.id, "at_s": round(c.t_sent - t0, 2),
                                        "ms": round((c.t_pager - c.t_sent) * 1000, 1)} for c in slow[:8]]
            report["calls"] = {"raised": len(f.ledger.calls), "press_p50_ms": percentile(lat, 50),
                               "press_p99_ms": percentile(lat, 99), "acts": f.ledger.acts,
                               "acts_resent": f.ledger.acts_resent, "drained": drained,
                               "snapshot_seq_backwards": f.ledger.seq_backwards}
            report["hub_rss_mb"] = fleet.rss_kb(hub.pid)[0] / 1024.0
            report["hub_rss_peak_mb"] = fleet.rss_kb(hub.pid)[1] / 1024.0
            twice, zombies = fleet.shown_twice(f.pagers, f.ledger)
            report["errors"] += f.ledger.errors[:10]
            if poster is not None:
                seen = f.ticket_seen()
                kitchen = set(restaurant.kitchen_of(menu).values())
                tickets = [(r, t) for r in poster.records for t in r["tickets"] if t.rsplit("-", 1)[-1] in kitchen]
                olat = [(seen[t] - r["t_sent"]) * 1000 for r, t in tickets if t in seen]
                report["orders"] = {"posted": len(poster.records), "tickets": len(tickets),
                                    "tickets_never_shown": sum(1 for _r, t in tickets if t not in seen),
                                    "order_p50_ms": percentile(olat, 50), "order_p99_ms": percentile(olat, 99),
                                    "bumps": f.ledger.bumps}
        finally:
            f.close()
        if not hub.alive():
            report["errors"].append("the hub died: exit %s\n%s" % (hub.proc.returncode, hub.log_tail()))
        report["hub_exit"] = hub.stop()
        a = fleet.audit(hub.db_path, f.ledger)
        lost, dup = fleet.loss_counts(a, twice, zombies)
        report["calls"].update(lost=lost, dup=dup, audit=fleet.brief(a),
                               shown_twice=twice[:10], shown_after_end=zombies[:10])
        if poster is not None:
            oa = fleet.audit_orders(hub.db_path, poster.records)
            oa["lost"] += report["orders"]["tickets_never_shown"]
            report["orders"].update(lost=oa["lost"], dup=oa["dup"],
                                    audit=fleet.brief(oa))
        report["hub_errors_logged"] = hub.log_count(" ERROR ")
        return report
    finally:
        if broker is not None:
            launch.stop(broker)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None):
    args = parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t = time.monotonic()
    report = rush(args, log)
    report["elapsed_s"] = round(time.monotonic() - t, 1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, ensure_ascii=False)
    c, o = report.get("calls", {}), report.get("orders")
    print("calls:  %d raised, lost %s, duplicated %s; press->pager p50 %s ms, p99 %s ms" % (
        c.get("raised", 0), c.get("lost"), c.get("dup"), _ms(c.get("press_p50_ms")), _ms(c.get("press_p99_ms"))))
    if o:
        print("orders: %d posted, %d tickets, lost %d, duplicated %d; order->display p50 %s ms, p99 %s ms" % (
            o["posted"], o["tickets"], o["lost"], o["dup"], _ms(o["order_p50_ms"]), _ms(o["order_p99_ms"])))
    print("hub: RSS %.1f MB (peak %.1f), %d ERROR lines logged; %.0f s" % (
        report.get("hub_rss_mb", 0), report.get("hub_rss_peak_mb", 0), report.get("hub_errors_logged", 0),
        report["elapsed_s"]))
    for e in report["errors"]:
        print("ERROR " + e)
    bad = (c.get("lost") or c.get("dup") or (o and (o["lost"] or o["dup"])) or report["errors"]
           or "calls" not in report)
    if bad:
        for key in ("calls", "orders"):
            if report.get(key, {}).get("audit"):
                print("%s audit: %s" % (key, json.dumps(report[key]["audit"], ensure_ascii=False)))
    return 1 if bad else 0


def _ms(v):
    return "-" if v is None else "%.1f" % v


if __name__ == "__main__":
    sys.exit(main())
