"""Scenario registry: the hook for "through the hub" rows (see run.py's docstring).

A scenario is a function `fn(ctx) -> dict` registered with @scenario. It runs once
per broker per repetition (up to `reps`), interleaved with the floor repetitions so
both see the same machine noise. Its dict holds metrics; every key that names a
floor metric (or is mapped to one with `vs=`) is printed beside that floor value
as a ratio value / floor, measured in the same run on the same broker process.
"""
import contextlib
from dataclasses import dataclass, field

import floor as _floor
import launch

# Floor metric names a scenario can be compared against, and their units.
FLOOR_METRICS = {
    "one_hop_p50_ms": "ms", "one_hop_p99_ms": "ms",
    "two_hop_p50_ms": "ms", "two_hop_p99_ms": "ms",
    "one_hop_msg_s": "msg/s", "two_hop_msg_s": "msg/s",
}


@dataclass
class Scenario:
    name: str
    fn: object
    brokers: tuple = ("amqtt", "mosquitto")
    reps: int = 1
    vs: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    report: object = None

    def floor_key(self, metric):
        key = self.vs.get(metric, metric)
        return key if key in FLOOR_METRICS else None


REGISTRY = []


def scenario(name, brokers=("amqtt", "mosquitto"), reps=1, vs=None, units=None, report=None):
    """Decorator: register fn(ctx) -> dict of metrics as scenario `name`.

    units {metric: unit} prints metrics that have no floor counterpart (no ratio);
    report(metrics, floor) -> {name: {"value", "target", "met"}} judges targets once the
    floor medians are known (reported, never asserted)."""
    def deco(fn):
        if any(s.name == name for s in REGISTRY):
            raise ValueError("scenario %r registered twice" % name)
        REGISTRY.append(Scenario(name, fn, tuple(brokers), reps, dict(vs or {}), dict(units or {}), report))
        return fn
    return deco


@dataclass
class Context:
    """What a scenario gets.

    broker      "amqtt" | "mosquitto": which floor this run is compared against
    host, port  the bare broker the floor was measured on (already running, fresh
                client ids and topics per measurement; use floor.fresh_topics())
    quick       --quick was given; scale counts down accordingly
    sizes       the floor's counts and caps (latency_n, warmup, latency_cap_s,
                throughput_n, throughput_cap_s); use them so rows are comparable
    rep         repetition index (0-based)
    profile     --profile was given: sample the hub with py-spy where it makes sense
    floor       the floor module: latency_run, throughput_run, call_payload,
                tasks_payload, call_seq, tasks_seq, fresh_topics, Conn, SITE
    """
    broker: str
    host: str
    port: int
    quick: bool
    sizes: dict
    rep: int
    profile: bool = False
    floor: object = _floor

    @staticmethod
    def free_port():
        return launch.free_port()

    @staticmethod
    def start_broker(name, port=None, as_hub=False):
        """Context manager: another bare broker (e.g. for a hub with its own config)."""
        return launch.broker(name, port, as_hub)

    @staticmethod
    @contextlib.contextmanager
    def nothing():
        yield
