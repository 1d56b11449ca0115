"""Firmware memory: every device app, as compiled .mpy under `micropython -X heapsize=112000`,
through a session against a real Mosquitto (tests/bench/firmware_mem.py); free heap after gc
must not trend down. The long form runs in `make bench`."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "bench"))

import firmware_mem  # noqa: E402

CYCLES = 36


def test_leak_verdict_tells_a_leak_from_noise():
    flat = [26000 + (192 if i % 5 == 0 else 0) - (64 if i % 7 == 0 else 0) for i in range(60)]
    assert firmware_mem.leak_verdict(flat)["leak"] is False
    leaking = [26000 - 24 * i + (128 if i % 3 == 0 else 0) for i in range(60)]
    v = firmware_mem.leak_verdict(leaking)
    assert v["leak"] is True and v["slope_b_per_cycle"] < -20
    dip = list(flat)
    dip[-1] -= 8000  # one bad sample at the end is not a trend
    assert firmware_mem.leak_verdict(dip)["leak"] is False
    step = [26000] * 30 + [25800] * 30  # one small step (fragmentation) is not a leak
    assert firmware_mem.leak_verdict(step)["leak"] is False
    warmup = [20000, 21000, 22000] + [26000] * 40  # boot-time growth is left out
    assert firmware_mem.leak_verdict(warmup)["leak"] is False
    assert firmware_mem.leak_verdict([26000] * 5)["leak"] is None


@pytest.fixture(scope="module")
def report():
    return firmware_mem.run(CYCLES)


def test_bundles_are_reported_against_the_budget(report):
    assert report["bundles"], "no bundle built"
    for app, b in report["bundles"].items():
        assert 0 < b["sim"] and 0 < b["shipped"], app
        assert b["budget"] == 40 * 1024 and b["within"] == (b["shipped"] <= b["budget"])
    print(firmware_mem.format_report(report))


@pytest.mark.parametrize("app", sorted(firmware_mem.SESSIONS))
def test_free_heap_does_not_trend_down(report, app):
    r = report["apps"][app]
    assert "error" not in r, r.get("error")
    assert r["samples"] == CYCLES and len(r["heap_at_load"]) == CYCLES
    assert 0 < r["min_free"] <= min(r["heap"])
    verdict = r["leak_check"]
    assert verdict["leak"] is False, (verdict, r["heap"])
