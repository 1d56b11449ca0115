"""The bouncer's rules on a fake clock (hub/bouncer.py): the token bucket, the flood flag and
its single report, and the call ids a table may use."""
import pytest

import protocol
from hub.bouncer import QUIET_S, Bouncer


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_a_device_over_its_rate_is_dropped_flagged_and_reported_once():
    clock = Clock()
    b = Bouncer(rate=10, burst=20, clock=clock)
    assert [b.admit("table", "T9") for _ in range(20)] == [None] * 20  # the burst
    first = b.admit("table", "T9")
    assert first == "rate: table/T9 sends over 10 messages a second; the excess is dropped"
    assert [b.admit("table", "T9") for _ in range(50)] == [""] * 50  # dropped, said once
    assert b.admit("table", "T2") is None  # others are not held back
    assert b.flags("table", "T9") == {"flood": {"dropped": 51, "for_s": 0.0}} and b.flags("table", "T2") == {}
    clock.t += 0.5  # five tokens back
    assert [b.admit("table", "T9") for _ in range(6)] == [None] * 5 + [""]
    clock.t += QUIET_S + 1  # quiet: the flag goes, a new flood is reported again
    assert b.flags("table", "T9") == {}
    assert [b.admit("table", "T9") for _ in range(20)] == [None] * 20
    assert b.admit("table", "T9").startswith("rate:")


def test_rate_zero_is_no_limit():
    b = Bouncer(rate=0, burst=1, clock=Clock())
    assert all(b.admit("table", "T1") is None for _ in range(1000))


@pytest.mark.parametrize("cid, ok", [("T1-1", True), ("T1-0000041", True), ("T2-1", False), ("T1-", False),
                                     ("T1-1x", False), ("T1-²", False), ("T1", False), ("T11-1", False),
                                     ("T1-2-5", False)])
def test_a_table_may_use_only_its_own_call_ids(cid, ok):
    msg = {"id": cid, "action": "cancel"}
    if ok:
        Bouncer.claims("table", "T1", "call", msg)
    else:
        with pytest.raises(protocol.ProtocolError) as e:
            Bouncer.claims("table", "T1", "call", msg)
        assert e.value.field == "id" and str(e.value) == "id: %r is not one of table T1's call ids (T1-<n>)" % cid
    Bouncer.claims("pager", "P1", "act", {"id": "T2-1", "action": "ack"})  # task ids are checked by their owners
