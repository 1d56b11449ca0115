"""Benchmark harness (`make bench`): the bare-broker floor, the real hub at a dinner rush
beside it, and the firmware's memory, for amqtt and Mosquitto, in one run.

    .venv/bin/python tests/bench/run.py [--broker amqtt|mosquitto|both] [--quick]
                                        [--out results.json] [--reps N] [--profile]
                                        [--fw-cycles N]

For each broker it starts a fresh broker on a free 127.0.0.1 port (launch.py) and
runs `reps` repetitions (3 by default) of the floor (floor.py, paho-mqtt only):

  one_hop_p50_ms / one_hop_p99_ms  QoS 1 table --call--> broker --> subscriber
  two_hop_p50_ms / two_hop_p99_ms  table --call--> broker --> relay --tasks--> broker --> pager
  one_hop_msg_s  / two_hop_msg_s   QoS 1 messages/s end to end, every sequence number checked

and after the first repetition the registered scenarios: scenario_hub.py runs the real hub
(`python -m hub`) with 200 tables, 30 pagers and 6 kitchen displays (fleet.py) and prints
press-to-pager latency, service-event throughput, order-to-display latency and RSS beside
the floor, with the issue's targets met or missed. Then firmware_mem.py runs every device
app under MicroPython (free heap, leak check, bundle sizes). Exit status 1 on any loss,
duplicate, leak or error.

Each value is the median over the repetitions; `noise` is (max - min) / median across
them. The machine is shared, so absolute numbers mean little: compare ratios only.

Adding hub scenarios
--------------------
Put them in tests/bench/scenario_<name>.py (imported automatically; not collected by
pytest). A scenario is a function of a Context returning a dict of metrics:

    from scenarios import scenario

    @scenario("hub", brokers=("amqtt", "mosquitto"), reps=1)
    def hub(ctx):
        f = ctx.floor
        call_t, tasks_t = f.fresh_topics()      # or the topics the hub really uses
        ... start the hub against ctx.host:ctx.port (ctx.free_port() for its own) ...
        lat = f.latency_run(ctx.host, ctx.port, call_t, f.call_payload, tasks_t,
                            seq_of, n=ctx.sizes["latency_n"], warmup=ctx.sizes["warmup"],
                            cap_s=ctx.sizes["latency_cap_s"])
        thr = f.throughput_run(..., n=ctx.sizes["throughput_n"], cap_s=...)
        ... stop the hub ...
        return {"two_hop_p50_ms": lat["p50_ms"], "two_hop_p99_ms": lat["p99_ms"],
                "two_hop_msg_s": thr["msg_s"], "lost": lat["lost"] + thr["lost"],
                "raw": {"latency": lat, "throughput": thr}}

Keys named like a floor metric (scenarios.FLOOR_METRICS) print as value, floor,
ratio = value / floor (latency > 1 is slower, msg/s < 1 is slower); `vs={"k": "floor_key"}`
maps other names. "lost" (int) is summed into the run total and must be 0; "raw" and
any other key goes to the JSON only. Return None to skip a broker. A scenario
runs after floor repetition r for r < reps; its rows are the median over its reps.
Exceptions are recorded in the JSON and make the exit status 1 (as does any loss).
"""
import argparse
import glob
import importlib
import json
import os
import platform
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

import firmware_mem  # noqa: E402
import floor  # noqa: E402
import hotspots  # noqa: E402
import launch  # noqa: E402
import scenarios  # noqa: E402
from stats import median, ratio, spread  # noqa: E402

SIZES = {
    # full run: ~1 min for both brokers on 2 busy cores, leaving room for hub rows
    "full": {"latency_n": 2000, "warmup": 100, "latency_cap_s": 30.0,
             "throughput_n": 10000, "throughput_cap_s": 30.0, "reps": 3},
    "quick": {"latency_n": 300, "warmup": 20, "latency_cap_s": 10.0,
              "throughput_n": 2000, "throughput_cap_s": 15.0, "reps": 2},
}


def load_scenarios():
    for path in sorted(glob.glob(os.path.join(HERE, "scenario_*.py"))):
        importlib.import_module(os.path.splitext(os.path.basename(path))[0])
    return list(scenarios.REGISTRY)


def machine_info():
    info = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_before": list(os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f
                                      if l.startswith("model name")), None)
    except OSError:
        info["cpu_model"] = None
    try:
        from importlib.metadata import version
        info["paho_mqtt"] = version("paho-mqtt")
    except Exception:
        info["paho_mqtt"] = None
    return info


COUNTS = ("lost", "dup")  # summed over repetitions, never a median


def _median_metrics(reps):
    keys = {k for r in reps for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in COUNTS}
    out = {k: median([r[k] for r in reps if r.get(k) is not None]) for k in sorted(keys)}
    for k in COUNTS:
        out[k] = sum(r.get(k, 0) or 0 for r in reps)
    return out


def run_broker(name, sizes, quick, active, log, profile=False):
    res = {"version": launch.version_of(name), "reps": [], "raw": [], "scenarios": {}}
    scen = {s.name: {"reps": [], "errors": []} for s in active}
    with launch.broker(name) as b:
        res["port"] = b.port
        # throw-away warm-up: first connections, imports, caches, CPU clocks
        floor.one_hop_latency(b.host, b.port, sizes["warmup"] * 2, 0, sizes["latency_cap_s"])
        for rep in range(sizes["reps"]):
            t = time.monotonic()
            m, raw = floor.floor(b.host, b.port, sizes)
            res["reps"].append(m)
            res["raw"].append(raw)
            log("  %s floor rep %d: %.1f s, lost %d" % (name, rep + 1, time.monotonic() - t, m["lost"]))
            for s in active:
                if rep >= s.reps:
                    continue
                ctx = scenarios.Context(name, b.host, b.port, quick, sizes, rep, profile)
                t = time.monotonic()
                try:
                    r = s.fn(ctx)
                except Exception:
                    scen[s.name]["errors"].append(traceback.format_exc())
                    log("  %s %s rep %d FAILED" % (name, s.name, rep + 1))
                    continue
                if r is not None:
                    scen[s.name]["reps"].append(r)
                log("  %s %s rep %d: %.1f s" % (name, s.name, rep + 1, time.monotonic() - t))
            if not b.alive():
                raise RuntimeError("%s died:\n%s" % (name, b.log_tail()))
    res["floor"] = _median_metrics(res["reps"])
    res["noise"] = {k: spread([r[k] for r in res["reps"]]) for k in scenarios.FLOOR_METRICS}
    vals = [v for v in res["noise"].values() if v is not None]
    res["noise_max"] = max(vals) if vals else None
    for s in active:
        d = scen[s.name]
        if d["reps"]:
            d["metrics"] = _median_metrics(d["reps"])
            d["ratios"] = {k: ratio(v, res["floor"].get(s.floor_key(k)))
                           for k, v in d["metrics"].items() if s.floor_key(k)}
            d["notes"] = sorted({n for r in d["reps"] for n in r.get("notes", ())})
            d["profile"] = next((r["profile"] for r in d["reps"] if r.get("profile")), None)
            if s.report is not None:
                d["targets"] = s.report(d["metrics"], res["floor"])
        res["scenarios"][s.name] = d
    return res


def rows_of(results, active):
    rows = []
    for name, res in results.items():
        for k, unit in scenarios.FLOOR_METRICS.items():
            rows.append({"broker": name, "scenario": "floor", "metric": k, "unit": unit,
                         "value": res["floor"].get(k), "floor": None, "ratio": None,
                         "noise": res["noise"].get(k)})
        for s in active:
            d = res["scenarios"].get(s.name, {})
            for k, v in d.get("metrics", {}).items():
                fk = s.floor_key(k)
                unit = scenarios.FLOOR_METRICS[fk] if fk else s.units.get(k)
                if unit is None:
                    continue
                rows.append({"broker": name, "scenario": s.name, "metric": k, "unit": unit, "value": v,
                             "floor": res["floor"].get(fk) if fk else None,
                             "ratio": d["ratios"].get(k) if fk else None, "noise": None})
    return rows


def _fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("msg/s", "call/s"):
        return "%.0f" % v
    return "%.1f" % v if unit == "MB" else "%.3f" % v


def print_scenario_notes(results, out=sys.stdout):
    """Targets met or missed, notes (e.g. pending rows) and profile hotspots, per broker."""
    for name, res in results.items():
        for s, d in res["scenarios"].items():
            for k, t in (d.get("targets") or {}).items():
                print("%s %s target %s: %.3f (want %s) %s" % (
                    name, s, k, t["value"], t["target"], "met" if t["met"] else "MISSED"), file=out)
            for note in d.get("notes") or ():
                print("%s %s: %s" % (name, s, note), file=out)
            for phase, summary in sorted((d.get("profile") or {}).items()):
                print(hotspots.format_summary(summary, "%s %s profile of the hub (%s phase)" % (name, s, phase)),
                      file=out)


def print_table(rows, results, errors=(), out=sys.stdout):
    hdr = "%-10s %-12s %-16s %10s %10s %8s %7s" % (
        "broker", "scenario", "metric", "value", "floor", "ratio", "noise")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in rows:
        print("%-10s %-12s %-16s %10s %10s %8s %7s" % (
            r["broker"], r["scenario"], r["metric"], _fmt(r["value"], r["unit"]),
            _fmt(r["floor"], r["unit"]),
            "-" if r["ratio"] is None else "%.2fx" % r["ratio"],
            "-" if r["noise"] is None else "%.0f%%" % (100 * r["noise"])), file=out)
    print_scenario_notes(results, out)
    for name, res in results.items():
        print("%s %s: lost %d, dup %d, noise max %s" % (
            name, res["version"], res["floor"]["lost"], res["floor"].get("dup", 0),
            "-" if res["noise_max"] is None else "%.0f%%" % (100 * res["noise_max"])), file=out)
    for e in errors:
        print("ERROR " + e.strip().splitlines()[0] + " ... " + e.strip().splitlines()[-1], file=out)
    if set(results) == {"amqtt", "mosquitto"}:
        a, m = results["amqtt"]["floor"], results["mosquitto"]["floor"]
        print("amqtt/mosquitto floor: " + ", ".join(
            "%s %.2fx" % (k, a[k] / m[k]) for k in scenarios.FLOOR_METRICS
            if a.get(k) and m.get(k)), file=out)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Bare-broker floor, the real hub at a dinner rush, and firmware memory, for amqtt and Mosquitto.")
    ap.add_argument("--broker", choices=("amqtt", "mosquitto", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="small counts, 2 repetitions (smoke test)")
    ap.add_argument("--reps", type=int, help="repetitions of the floor (default 3, quick 2)")
    ap.add_argument("--out", help="write JSON results here")
    ap.add_argument("--only", action="append", metavar="SCENARIO",
                    help="run only these registered scenarios (floor always runs)")
    ap.add_argument("--no-scenarios", action="store_true", help="floor only")
    ap.add_argument("--profile", action="store_true",
                    help="sample the hub with py-spy while it is saturated (throughput phase; pip install py-spy)")
    ap.add_argument("--fw-cycles", type=int, metavar="N",
                    help="firmware memory session length per app (default 150, quick 40; 0 skips it)")
    args = ap.parse_args(argv)

    sizes = dict(SIZES["quick" if args.quick else "full"])
    if args.reps:
        sizes["reps"] = max(1, args.reps)
    brokers = launch.BROKERS if args.broker == "both" else (args.broker,)
    active = [] if args.no_scenarios else load_scenarios()
    if args.only:
        active = [s for s in active if s.name in args.only]

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.monotonic()
    info = machine_info()
    results, errors = {}, []
    for name in brokers:
        try:
            results[name] = run_broker(name, sizes, args.quick,
                                       [s for s in active if name in s.brokers], log, args.profile)
        except Exception:
            errors.append("%s: %s" % (name, traceback.format_exc()))
            log(errors[-1])
    fw_cycles = args.fw_cycles if args.fw_cycles is not None else (40 if args.quick else 150)
    fw = None
    if fw_cycles > 0 and not args.no_scenarios:
        log("firmware memory: %d cycles per app" % fw_cycles)
        try:
            fw = firmware_mem.run(fw_cycles, log)
            errors += firmware_mem.failures(fw)
        except Exception:
            errors.append("firmware: %s" % traceback.format_exc())
    info["loadavg_after"] = list(os.getloadavg())
    info["broker_versions"] = {n: launch.version_of(n) for n in brokers}
    rows = rows_of(results, active)
    lost = sum(r["floor"]["lost"] for r in results.values()) + sum(
        (d.get("metrics", {}).get("lost", 0) or 0) + (d.get("metrics", {}).get("dup", 0) or 0)
        for r in results.values() for d in r["scenarios"].values())
    for r in results.values():
        for s, d in r["scenarios"].items():
            errors += ["%s: %s" % (s, e) for e in d["errors"]]
    doc = {
        "schema": "rfm-bench/1",
        "command": [os.path.relpath(__file__, ROOT)] + list(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "sizes": sizes,
        "payload_bytes": floor.SIZES,
        "machine": info,
        "brokers": results,
        "scenarios": [s.name for s in active],
        "rows": rows,
        "lost": lost,
        "firmware": fw,
        "errors": errors,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    print_table(rows, results, errors)
    if fw is not None:
        print(firmware_mem.format_report(fw))
    print("payloads: call %d B, tasks %d B; load %s -> %s; %.0f s" % (
        floor.SIZES["call"], floor.SIZES["tasks"],
        " ".join("%.2f" % x for x in info["loadavg_before"]),
        " ".join("%.2f" % x for x in info["loadavg_after"]), doc["elapsed_s"]))
    return 1 if (errors or lost or len(results) != len(brokers)) else 0


if __name__ == "__main__":
    sys.exit(main())
