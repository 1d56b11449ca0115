"""Smoke test of the benchmark harness (tests/bench/run.py): a --quick run on the
embedded-default broker (amqtt), the floor and the hub at a dinner rush, must produce the
JSON shape and lose nothing. No timing assertions: the machine is shared and noisy."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "tests", "bench", "run.py")
FLOOR = ("one_hop_p50_ms", "one_hop_p99_ms", "two_hop_p50_ms", "two_hop_p99_ms",
         "one_hop_msg_s", "two_hop_msg_s")


def test_bench_quick_amqtt(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, RUN, "--quick", "--broker", "amqtt", "--fw-cycles", "0",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())

    for key in ("schema", "command", "sizes", "payload_bytes", "machine", "brokers", "rows",
                "lost", "errors", "elapsed_s"):
        assert key in doc, key
    m = doc["machine"]
    for key in ("cpu_count", "loadavg_before", "loadavg_after", "python", "timestamp",
                "broker_versions"):
        assert key in m, key
    assert m["broker_versions"]["amqtt"]
    assert doc["errors"] == []
    assert doc["lost"] == 0

    b = doc["brokers"]["amqtt"]
    assert len(b["reps"]) == doc["sizes"]["reps"] >= 2
    for key in FLOOR:
        assert b["floor"][key] > 0, key
        assert key in b["noise"]
    assert b["floor"]["lost"] == 0
    for raw in b["raw"]:
        for name, r in raw.items():
            assert r["lost"] == 0 and not r["timed_out"], (name, r)
            n = r["n"] if "n" in r else r["sent"]
            assert r["received"] == n > 0, (name, r)
    floor_rows = [r for r in doc["rows"] if r["scenario"] == "floor"]
    assert {r["metric"] for r in floor_rows} == set(FLOOR)
    for r in doc["rows"]:
        if r["floor"] is not None:
            assert r["ratio"] is not None and r["ratio"] > 0, r
    assert "ratio" in proc.stdout and "one_hop_p99_ms" in proc.stdout

    # through the real hub: 200 tables, 30 pagers, 6 displays
    hub = b["scenarios"]["hub"]
    assert hub["errors"] == [], hub["errors"]
    met = hub["metrics"]
    assert met["lost"] == 0 and met["dup"] == 0, hub["reps"][0]["raw"]["audit"]
    for key in ("press_p50_ms", "press_p99_ms", "events_s", "rss_mb", "broker_rss_mb", "hub_share_mb"):
        assert met[key] > 0, key
    assert met["press_p50_ms"] <= met["press_p99_ms"]
    raw = hub["reps"][0]["raw"]
    assert raw["throughput"]["completed"] == raw["throughput"]["calls"] > 0
    assert raw["press"]["n"] > 0 and raw["audit"]["calls"] >= raw["throughput"]["calls"]
    ratios = {r["metric"]: r for r in doc["rows"] if r["scenario"] == "hub"}
    assert ratios["press_p99_ms"]["floor"] == b["floor"]["two_hop_p99_ms"]
    assert ratios["events_s"]["floor"] == b["floor"]["two_hop_msg_s"]
    assert set(hub["targets"]) == {"p99_added_ms", "throughput_ratio", "hub_share_mb"}
    assert "order_p99_ms" in met or any("orders intake not landed" in n for n in hub["notes"])
    assert "target p99_added_ms" in proc.stdout
