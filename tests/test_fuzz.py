"""Fuzzing (hypothesis) of everything that parses input from outside: the wire contract
(protocol decode and topics), each order channel's webhook path, the floor and menu
loaders (tests/fuzz_targets.py). Nothing may crash, and every rejection must name its
field and reason.

In the normal test run each target gets 400-1500 inputs (about 40 s in all); `make fuzz`
sets FUZZ_EXAMPLES=100000 (each target that many, the file loaders a tenth; about 35 min)."""
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub import floor, stations
from tests import fuzz_targets as fz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 1500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
LIGHT = settings(FUZZ, max_examples=EXAMPLES or 1200)
FILES = settings(FUZZ, max_examples=EXAMPLES // 10 or 400)  # each input is written to a file and read twice


@FUZZ
@given(fz.wire_inputs())
def test_fuzz_protocol_decode(case):
    fz.check_wire(*case)


@FUZZ
@given(st.text(max_size=60) | st.builds("/".join, st.lists(st.sampled_from(fz.WORDS + ["rfm", "v1", "demo",
                                                                                        "table", "pager", "call"]),
                                                            max_size=8)))
def test_fuzz_protocol_topics(text):
    fz.check_topic(text)


@pytest.mark.parametrize("name", sorted(fz.BASES))
def test_fuzz_order_channel(name):
    @LIGHT
    @given(fz.channel_inputs(name))
    def run(case):
        fz.check_channel(name, *case)
    run()


@FUZZ
@given(fz.floor_docs())
def test_fuzz_floor(doc):
    fz.check_floor(doc)


@FUZZ
@given(fz.menu_docs())
def test_fuzz_menu(spec):
    fz.check_menu(spec)


@FILES
@given(st.binary(max_size=200) | st.builds(fz.dumps, fz.floor_docs()) | st.builds(fz.dumps, fz.menu_docs()))
def test_fuzz_floor_and_menu_files(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz.json"
    fz.check_file(floor.read_file, floor.FloorError, path, data)
    fz.check_file(stations.load_menu, stations.MenuError, path, data)


def test_the_fuzzers_reach_acceptance():
    """The strategies are not all noise: some inputs of each kind get through."""
    @settings(FUZZ, max_examples=200, database=None)
    @given(st.data())
    def run(data):
        seen["wire"] += fz.check_wire(*data.draw(fz.wire_inputs()))
        seen["floor"] += fz.check_floor(data.draw(fz.floor_docs()))
        seen["menu"] += fz.check_menu(data.draw(fz.menu_docs()))
        for name in fz.BASES:
            seen[name] += fz.check_channel(name, *data.draw(fz.channel_inputs(name))) == "accepted"
    seen = dict.fromkeys(["wire", "floor", "menu"] + sorted(fz.BASES), 0)
    run()
    assert all(seen.values()), seen
