"""Smoke test of the benchmark harness (tests/bench/run.py): a --quick run on the
embedded-default broker (amqtt) must produce the JSON shape and lose nothing.
No timing assertions: the machine is shared and noisy."""
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
    proc = subprocess.run([sys.executable, RUN, "--quick", "--broker", "amqtt", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
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
        if r["scenario"] != "floor":
            assert r["floor"] and r["ratio"] is not None, r
    assert "ratio" in proc.stdout and "one_hop_p99_ms" in proc.stdout
