"""Per-device MQTT credentials and topic ACLs from the hub's registry, on both brokers:
the embedded amqtt (hub --auth) and Mosquitto fed the files the hub generates."""
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from hub import access
from tests.brokers import Recorder, free_port, start_hub, stop_process, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def post(hub, path, body, token=None):
    req = urllib.request.Request(hub.http + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


class Client:
    """A paho client logging in as one identity; records CONNACK and SUBACK codes."""

    def __init__(self, port, user=None, password=None, client_id=""):
        self.connack = None
        self.suback = None
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda c, u, mid, codes, p: setattr(self, "suback", [int(x.value) for x in codes])
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        wait_until(lambda: self.connack is not None, 10, "CONNACK")

    def _on_connect(self, client, userdata, flags, rc, props):
        self.connack = rc.value
        if rc.is_failure:
            client.disconnect()

    def publish(self, topic, payload):
        info = self.c.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1)
        info.wait_for_publish(10)

    def subscribe(self, topic):
        self.suback = None
        self.c.subscribe(topic, 1)
        return wait_until(lambda: self.suback, 10, "SUBACK")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def register(hub, token, kind, dev, model=None):
    body = {"kind": kind, "id": dev}
    if model:
        body["model"] = model
    status, creds = post(hub, "/api/devices", body, token)
    assert status in (200, 201), creds
    assert creds["username"] == "%s/%s" % (kind, dev) and len(creds["password"]) >= 20
    return creds


def spoof_check(port, admin_secret, t1):
    """T1's credentials publish a call as T2, then one as itself: the hub's own client (a
    subscriber to everything) gets T1's and never T2's, which was sent first. Likewise T1,
    subscribed to both feedback topics, receives its own and never T2's. Returns the SUBACK
    codes for (T1's feedback, T2's feedback, rfm/#)."""
    rec = Recorder(port, ["rfm/#"], auth=("admin", admin_secret))  # "hub" is the hub's own client id
    dev = Client(port, t1["username"], t1["password"])
    got = []
    dev.c.on_message = lambda c, u, m: got.append(m.topic)
    try:
        assert dev.connack == 0
        dev.publish("rfm/v1/demo/table/T2/call", {"id": "T2-1", "action": "raise", "type": "bill"})
        dev.publish("rfm/v1/demo/table/T1/call", {"id": "T1-1", "action": "raise", "type": "water"})
        rec.wait_msg(lambda t, p, r: t == "rfm/v1/demo/table/T1/call", 10, "T1's own call")
        assert rec.matching("/table/T1/call")
        assert not rec.matching("/table/T2/call"), rec.matching("/table/T2/call")
        codes = [dev.subscribe(t)[0] for t in ("rfm/v1/demo/table/T1/feedback",
                                               "rfm/v1/demo/table/T2/feedback", "rfm/#")]
        rec.publish("rfm/v1/demo/table/T2/feedback", {"id": "T2-1", "state": "seen"})
        rec.publish("rfm/v1/demo/table/T1/feedback", {"id": "T1-1", "state": "seen"})
        wait_until(lambda: "rfm/v1/demo/table/T1/feedback" in got, 10, "T1's own feedback")
        assert "rfm/v1/demo/table/T2/feedback" not in got, got
        return codes
    finally:
        dev.close()
        rec.close()


def test_amqtt_device_cannot_speak_for_another(tmp_path):
    mport, hport = free_port(), free_port()
    hub = start_hub(tmp_path, mport, hport, extra=["--auth"])
    try:
        auth_dir = tmp_path / "data" / "auth"
        token = (auth_dir / "admin.token").read_text().strip()
        admin_secret = (auth_dir / "admin.secret").read_text().strip()
        status, body = post(hub, "/api/devices", {"kind": "table", "id": "T1"})
        assert status == 401 and "Bearer" in body["error"]
        status, body = post(hub, "/api/devices", {"kind": "table", "id": "T 1"}, token)
        assert status == 400 and body["error"].startswith("id:")
        status, body = post(hub, "/api/devices", {"kind": "table", "id": "T1", "model": "waiter_pager"}, token)
        assert status == 400 and body["error"].startswith("model:")
        t1 = register(hub, token, "table", "T1", "table_button")
        register(hub, token, "table", "T2")
        assert Client(mport).connack != 0, "anonymous must be refused with --auth"
        assert Client(mport, "table/T1", "wrong").connack != 0
        # amqtt refuses the other device's subscription outright
        assert spoof_check(mport, admin_secret, t1) == [1, 128, 128]
        # the hub saw T1's call and nothing from T2
        wait_until(lambda: hub.get("/api/calls")[1]["calls"], 10, "T1's call at the hub")
        assert [c["table"] for c in hub.get("/api/calls")[1]["calls"]] == ["T1"]
        # re-registering rotates the password: the old one stops working
        t1b = register(hub, token, "table", "T1")
        assert Client(mport, "table/T1", t1["password"]).connack != 0
        assert Client(mport, "table/T1", t1b["password"]).connack == 0
    finally:
        assert hub.stop() == 0, hub.log()[-3000:]


def _mosquitto(port, conf_dir, auth_dir):
    lines = ["log_dest stdout", "log_type all", "persistence false",
             "include_dir %s" % auth_dir]  # which defines the listener
    if os.geteuid() == 0:
        lines.append("user root")
    conf = os.path.join(conf_dir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    log = open(os.path.join(conf_dir, "mosquitto.log"), "ab")
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf], stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    return proc


@pytest.mark.skipif(not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")),
                    reason="mosquitto not installed")
def test_mosquitto_device_cannot_speak_for_another(tmp_path):
    data = tmp_path / "data"
    mport, hport = free_port(), free_port()
    out = subprocess.run([sys.executable, "-m", "hub.access", "--data-dir", str(data), "--port", str(mport),
                          "--bind", "127.0.0.1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    auth_dir = data / "auth"
    conf = (auth_dir / "mosquitto.conf").read_text()
    assert "use_username_as_clientid true" in conf and "allow_anonymous false" in conf
    acl = (auth_dir / "mosquitto.acl").read_text()
    assert "user hub\ntopic readwrite rfm/#" in acl and "pattern" not in acl  # exact per-device lists
    broker = _mosquitto(mport, str(tmp_path), str(auth_dir))
    hub = None
    try:
        hub = start_hub(tmp_path, mport, hport, broker_url="mqtt://127.0.0.1:%d" % mport,
                        extra=["--auth", "--broker-reload", "kill -HUP %d" % broker.pid])
        token = (auth_dir / "admin.token").read_text().strip()
        t1 = register(hub, token, "table", "T1")
        register(hub, token, "table", "T2")
        # the hub rewrote the files and sent SIGHUP: wait until Mosquitto knows T1
        wait_until(lambda: Client(mport, t1["username"], t1["password"]).connack == 0, 10,
                   "mosquitto to reload its password file")
        assert Client(mport).connack != 0, "anonymous must be refused"
        admin_secret = (auth_dir / "admin.secret").read_text().strip()
        spoof_check(mport, admin_secret, t1)  # Mosquitto grants SUBACKs and filters on delivery
        wait_until(lambda: hub.get("/api/calls")[1]["calls"], 10, "T1's call at the hub")
        assert [c["table"] for c in hub.get("/api/calls")[1]["calls"]] == ["T1"]
    finally:
        if hub:
            assert hub.stop() == 0, hub.log()[-3000:]
        stop_process(broker)


def test_generated_files_match_the_registry(tmp_path):
    a = access.Access(tmp_path, "demo")
    a.write([{"kind": "pager", "id": "P1", "amqtt_hash": access.amqtt_hash("pw1"),
              "mosquitto_hash": access.mosquitto_hash("pw1")}])
    acl = json.loads(a.path("amqtt_acl").read_text())
    assert acl["publish-acl"]["pager/P1"] == ["rfm/v1/demo/pager/P1/status", "rfm/v1/demo/pager/P1/act"]
    assert acl["subscribe-acl"]["pager/P1"] == ["rfm/v1/demo/pager/P1/tasks", "rfm/v1/demo/pager/P1/cmd"]
    assert acl["publish-acl"]["hub"] == ["#"]
    users = dict(line.split(":", 1) for line in a.path("mosquitto_passwd").read_text().split())
    assert set(users) == {"hub", "admin", "pager/P1"} and users["pager/P1"].startswith("$7$101$")
    assert oct(os.stat(a.path("hub_secret")).st_mode & 0o777) == "0o600"
