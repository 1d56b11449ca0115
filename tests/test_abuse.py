"""Abuse from a device with valid credentials (hub --auth): a button mashed 100 times on the
real firmware makes one call; a device flooding the broker is rate-limited, flagged and
quarantined while another table's calls are all still answered; payloads over the
contract's limit and packets over the brokers' limit are refused with a reason. The
flood's effect on the other table's call -> feedback latency is printed (p50/p99), never
asserted."""
import json
import math
import os
import socket
import subprocess
import sys
import time

import pytest

from hub.access import MAX_PACKET
from hub.bouncer import BURST
from tests.brokers import Recorder, wait_until
from tests.secure_site import BROKERS, ERRORS, WAIT_S, Dev, T, calls, secure_site
from tests.simdev import SimDevice

PRESSES = 100
REMIND_S = 10  # firmware/apps/table_button.py REMIND_MS
RATE = 20  # the hub's default --device-rate
SAMPLES = 40
MAX_FLOOD = 400000  # messages; the flood also stops when the victim's calls are done
FLOOD_S = 60
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_mashed_button_makes_one_call(tmp_path):
    with secure_site(tmp_path, "amqtt", devices=(("table", "T1"),)) as (hub, port, secret, creds):
        t1 = creds["T1"]
        dev = SimDevice("table", "T1", port, tmp_path, broker={"host": "127.0.0.1", "port": port,
                                                               "user": t1["username"], "password": t1["password"]})
        dev.start()
        try:
            dev.wait_for(lambda s: s["connected"], what="T1 connected with its own credentials and client id")
            t0 = time.monotonic()
            for _ in range(3 * PRESSES):  # a busy machine's debounce misses some quick presses: press on
                have = presses(dev)
                if have >= PRESSES:
                    break
                batch = min(8, PRESSES - have)  # the sim queues at most 8 presses per button
                for _ in range(batch):
                    dev.press("water")
                time.sleep(batch * 0.16 + 0.1)  # each press is 80 ms down, 80 ms up
            mashed_s = time.monotonic() - t0
            dev.wait_for(lambda s: s["app"]["calls"].get("water", [None, None])[1] == "seen", WAIT_S, "seen")
            assert presses(dev) >= PRESSES
            got = list(calls(hub).values())
            assert len(got) == 1 and got[0]["table"] == "T1" and got[0]["type"] == "water", got
            # one reminder at most every REMIND_S, not one per press
            assert got[0]["reminders"] <= math.ceil(mashed_s / REMIND_S), (got, mashed_s)
            sent = dev.log.count("published rfm/v1/demo/table/T1/call")
            assert sent <= 1 + math.ceil(mashed_s / REMIND_S) + math.ceil(mashed_s / 5), sent
            print("\nmashed: %d presses in %.1f s -> 1 call, %d reminders, %d call messages sent"
                  % (presses(dev), mashed_s, got[0]["reminders"], sent))
        finally:
            dev.stop()


def flags(hub, device):
    return next((d["flags"] for d in hub.get("/api/devices")[1]["devices"] if d["id"] == device and d["flags"]),
                None)


def presses(dev):
    return dev.log.count(" press water\n")


def p(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(math.ceil(q * len(s))) - 1)]


def answered(port, creds, first, n):
    """T2 raises n calls one after another; returns each call -> feedback latency in ms."""
    dev = Dev(port, creds, "rfm-demo-table-T2", subscribe=[T("table", "T2", "feedback")])
    out = []
    try:
        for k in range(first, first + n):
            cid = "T2-%d" % k
            t0 = time.perf_counter()
            dev.send(T("table", "T2", "call"), {"id": cid, "action": "raise", "type": "water"})
            wait_until(lambda: any(p["id"] == cid for _t, p in dev.got), 30, "feedback on %s" % cid, 0.001)
            out.append((time.perf_counter() - t0) * 1000)
    finally:
        dev.close()
    return out


@pytest.mark.parametrize("broker", BROKERS)
def test_a_flooding_device_is_limited_and_flagged_and_others_are_answered(tmp_path, broker):
    devices = (("table", "T9"), ("table", "T2"))
    with secure_site(tmp_path, broker, devices=devices) as (hub, port, secret, creds):
        rec = Recorder(port, [ERRORS], auth=("admin", secret))
        calm = answered(port, creds["T2"], 1, SAMPLES)

        t9 = creds["T9"]
        flooder = subprocess.Popen([sys.executable, "-m", "tests.flooder", str(port), t9["username"],
                                    t9["password"], str(MAX_FLOOD), str(FLOOD_S)], cwd=ROOT, stdout=subprocess.PIPE,
                                   text=True)
        started = time.monotonic()
        try:
            flagged = wait_until(lambda: flags(hub, "T9"), 30, "T9 flagged")
            during = answered(port, creds["T2"], SAMPLES + 1, SAMPLES)
        finally:
            flooder.terminate()
            sent = int(flooder.communicate(timeout=30)[0].split()[-1])
            flood_s = time.monotonic() - started
        print("\nflood on %s: %d messages in %.1f s; T2 call->feedback ms p50/p99 calm %.1f/%.1f, during the "
              "flood %.1f/%.1f" % (broker, sent, flood_s, p(calm, .5), p(calm, .99), p(during, .5),
                                   p(during, .99)))
        assert len(calm) == len(during) == SAMPLES  # every call of the other table answered
        assert flagged["flood"]["dropped"] > 0
        wait_until(lambda: any(json.loads(m[1])["reason"].startswith("rate: table/T9 sends over")
                               for m in rec.matching(ERRORS)), WAIT_S, "the flood reported once")
        reports = [m for m in rec.matching(ERRORS) if json.loads(m[1])["reason"].startswith("rate:")]
        assert len(reports) == 1, reports

        def accepted():  # one live call per type: T9's raises the hub took are its call and reminders on it
            return sum(1 + c["reminders"] for c in calls(hub).values() if c["table"] == "T9")
        seen = [-1]

        def settled():
            last, seen[0] = seen[0], accepted()
            return seen[0] == last
        wait_until(settled, 30, "the hub done with T9's backlog", 1.0)
        window = time.monotonic() - started
        assert 0 < seen[0] <= BURST + RATE * window, (seen[0], window)
        assert "is flooding the hub" in hub.log()
        # quarantined at the broker meanwhile: T9 may not publish, T2 still may
        acl = (tmp_path / "data" / "auth" / "mosquitto.acl").read_text()
        assert "write rfm/v1/demo/table/T9/" not in acl and "write rfm/v1/demo/table/T2/call" in acl
        assert "device table/T9 quarantined" in hub.log()
        rec.close()


@pytest.mark.parametrize("broker", BROKERS)
def test_oversized_payloads_and_packets_are_refused(tmp_path, broker):
    with secure_site(tmp_path, broker, devices=(("table", "T1"), ("table", "T2"))) as (hub, port, secret, creds):
        rec = Recorder(port, [ERRORS], auth=("admin", secret))
        t2 = Dev(port, creds["T2"], "rfm-demo-table-T2", subscribe=[T("table", "T2", "feedback")])
        t1 = Dev(port, creds["T1"], "rfm-demo-table-T1")
        try:
            # over the contract's 256 bytes for a call: the hub names the limit
            big = b'{"id":"T1-1","action":"raise","type":"' + b"w" * 300 + b'"}'
            t1.c.publish(T("table", "T1", "call"), big, qos=1).wait_for_publish(WAIT_S)
            _t, err, _r = rec.wait_msg(lambda t, p, r: p["topic"] == T("table", "T1", "call"), WAIT_S, "error")
            assert err["reason"] == "payload: %d bytes, over the 256 byte limit" % len(big)
            # over the broker's packet limit: the connection is closed before the payload is read
            t1.c.publish(T("table", "T1", "call"), b"x" * (MAX_PACKET * 4), qos=0)
            wait_until(t1.dropped.is_set, WAIT_S, "the broker to close T1's connection")
            # the other table is served as before
            t2.send(T("table", "T2", "call"), {"id": "T2-1", "action": "raise", "type": "bill"})
            wait_until(lambda: any(p["id"] == "T2-1" for _t, p in t2.got), WAIT_S, "T2 answered")
            assert "T2-1" in calls(hub) and "T1-1" not in calls(hub)
            if broker == "amqtt":
                assert "byte packet, over the %d byte limit" % MAX_PACKET in hub.log()
        finally:
            for c in (t1, t2, rec):
                c.close()


def test_a_connection_that_never_sends_connect_is_closed(tmp_path):
    """amqtt would wait forever for the CONNECT; the hub's broker gives up after 10 s."""
    with secure_site(tmp_path, "amqtt", devices=(("table", "T1"),)) as (hub, port, secret, creds):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        try:
            s.sendall(b"\x10")  # the first byte of a CONNECT, then nothing
            assert s.recv(16) == b""  # closed by the broker
        finally:
            s.close()
        assert "no CONNECT from 127.0.0.1" in hub.log()
