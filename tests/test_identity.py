"""No device may speak for another, on both brokers (hub --auth with the embedded amqtt,
and Mosquitto fed the files the hub writes): table T1's own credentials cannot raise,
remind, cancel or ack anything of table T2's, hear T2's feedback, or take over T2's
session by connecting with T2's client id. The broker stops what it can see (topics,
client ids); the hub refuses the payload claims it cannot trust, on its error topic."""
import json

import pytest

from tests.brokers import Recorder, wait_until
from tests.secure_site import BROKERS, ERRORS, WAIT_S, Dev, T, calls, secure_site


@pytest.fixture(params=BROKERS)
def site(request, tmp_path):
    with secure_site(tmp_path, request.param) as (hub, port, secret, creds):
        yield hub, port, secret, creds, request.param


def test_table_cannot_raise_cancel_or_ack_for_another(site):
    hub, port, secret, creds, broker = site
    rec = Recorder(port, ["rfm/#"], auth=("admin", secret))
    p1 = Dev(port, creds["P1"], "rfm-demo-pager-P1", subscribe=[T("pager", "P1", "tasks")])
    t2 = Dev(port, creds["T2"], "rfm-demo-table-T2", subscribe=[T("table", "T2", "feedback")])
    t1 = Dev(port, creds["T1"], "rfm-demo-table-T1")
    try:
        p1.send(T("pager", "P1", "status"), {"online": True})
        wait_until(lambda: any(d["id"] == "P1" and d["online"] for d in hub.get("/api/devices")[1]["devices"]),
                   WAIT_S, "P1 online")
        t2.send(T("table", "T2", "call"), {"id": "T2-1", "action": "raise", "type": "bill"})
        wait_until(lambda: calls(hub).get("T2-1", {}).get("state") == "assigned", WAIT_S, "T2's call on P1")

        # the broker refuses T1 on topics not its own: T2's call, P1's act, a message tables never send
        t1.send(T("table", "T2", "call"), {"id": "T2-9", "action": "raise", "type": "water"})
        t1.send(T("table", "T2", "call"), {"id": "T2-1", "action": "cancel"})
        t1.send(T("pager", "P1", "act"), {"id": "T2-1", "action": "ack"})
        t1.send("rfm/v1/demo/table/T1/act", {"id": "T2-1", "action": "done"})
        # the hub refuses T1's own topic carrying T2's call ids
        t1.send(T("table", "T1", "call"), {"id": "T2-1", "action": "cancel"})
        t1.send(T("table", "T1", "call"), {"id": "T2-2", "action": "raise", "type": "bill"})
        t1.send(T("table", "T1", "call"), {"id": "T1-2x", "action": "raise", "type": "bill"})
        t1.send(T("table", "T1", "call"), {"id": "T1-1", "action": "raise", "type": "water"})  # its own
        wait_until(lambda: "T1-1" in calls(hub), WAIT_S, "T1's own call")

        heard = [(t, json.loads(p)) for t, p, _r, _d in rec.msgs if not t.endswith("/status")]
        for spoof in ((T("table", "T2", "call"), {"id": "T2-9", "action": "raise", "type": "water"}),
                      (T("table", "T2", "call"), {"id": "T2-1", "action": "cancel"}),
                      (T("pager", "P1", "act"), {"id": "T2-1", "action": "ack"}),
                      ("rfm/v1/demo/table/T1/act", {"id": "T2-1", "action": "done"})):
            assert spoof not in heard, "%s broker let %s through" % (broker, spoof)
        def reasons():
            errors = [json.loads(p) for t, p, _r, _d in rec.msgs if t == ERRORS]
            return [e["reason"] for e in errors if e["topic"] == T("table", "T1", "call")]
        wait_until(lambda: len(reasons()) >= 3, WAIT_S, "three errors on the hub's error topic")
        assert reasons() == ["id: 'T2-1' is not one of table T1's call ids (T1-<n>)",
                             "id: 'T2-2' is not one of table T1's call ids (T1-<n>)",
                             "id: 'T1-2x' is not one of table T1's call ids (T1-<n>)"]
        now = calls(hub)
        assert sorted(now) == ["T1-1", "T2-1"] and now["T2-1"]["state"] == "assigned", now
        assert now["T2-1"]["reminders"] == 0

        # T2's feedback: T1 cannot subscribe (amqtt refuses, Mosquitto grants and never delivers)
        codes = [t1.subscribe(T("table", "T1", "feedback")), t1.subscribe(T("table", "T2", "feedback")),
                 t1.subscribe("rfm/v1/demo/table/+/feedback")]
        assert codes[0] == 1 and (codes[1:] == [128, 128] if broker == "amqtt" else True), codes
        p1.send(T("pager", "P1", "act"), {"id": "T2-1", "action": "ack"})  # the real waiter
        wait_until(lambda: (T("table", "T2", "feedback"), {"id": "T2-1", "state": "on_the_way", "by": "P1"})
                   in t2.got, WAIT_S, "T2 told its waiter is coming")
        t1.send(T("table", "T1", "call"), {"id": "T1-1", "action": "cancel"})
        wait_until(lambda: any(p["id"] == "T1-1" and p["state"] == "cancelled" for _t, p in t1.got), WAIT_S,
                   "T1's own feedback")
        assert all(t == T("table", "T1", "feedback") for t, _p in t1.got), t1.got
    finally:
        for c in (t1, t2, p1, rec):
            c.close()


def test_no_one_takes_over_another_devices_session(site):
    hub, port, secret, creds, broker = site
    rec = Recorder(port, ["rfm/#"], auth=("admin", secret))
    t2 = Dev(port, creds["T2"], "rfm-demo-table-T2", subscribe=[T("table", "T2", "feedback")])
    try:
        # T1's credentials under T2's client id; T2's username with a wrong password
        thief = Dev(port, creds["T1"], "rfm-demo-table-T2")
        guess = Dev(port, creds["T2"], "rfm-demo-table-T2", password="not-the-password")
        assert guess.connack != 0
        if broker == "amqtt":
            assert thief.connack == 133, "identifier rejected (3.1.1 CONNACK 2, as paho reports it)"
        else:  # use_username_as_clientid: T1 is connected as itself
            assert thief.connack == 0
            thief.send(T("table", "T1", "status"), {"online": True})
        for c in (thief, guess):
            c.close()
        # T2 kept its connection, its subscription and its identity
        rec.publish(T("table", "T2", "feedback"), {"id": "T2-5", "state": "seen"})
        wait_until(lambda: any(p["id"] == "T2-5" for _t, p in t2.got), WAIT_S, "T2 still subscribed")
        t2.send(T("table", "T2", "call"), {"id": "T2-5", "action": "raise", "type": "water"})
        wait_until(lambda: "T2-5" in calls(hub), WAIT_S, "T2 still allowed to call")
        assert not t2.dropped.is_set()
    finally:
        t2.close()
        rec.close()
