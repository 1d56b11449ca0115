"""MQTT and HTTP over TLS with the hub's local CA (hub --tls, hub/certs.py): the CA and the
hub's certificate, the embedded broker and the Mosquitto listener the hub configures,
paho clients and the real firmware under MicroPython trusting only that CA, HTTPS for the
API. Plain connections to the TLS ports get nowhere."""
import datetime
import json
import os
import socket
import ssl
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from hub.access import Access
from hub.certs import Certs
from tests.brokers import HubProcess, free_port, stop_process, wait_until
from tests.secure_site import HAVE_MOSQUITTO, T, WAIT_S
from tests.simdev import SimDevice
from tests.test_fleet_auth import _mosquitto


def test_the_local_ca_and_the_hub_certificate(tmp_path):
    certs = Certs(tmp_path)
    assert certs.ensure(["127.0.0.1", "hub.local"]) == ["127.0.0.1", "hub.local"]
    ca = x509.load_pem_x509_certificate(certs.path("ca").read_bytes())
    cert = x509.load_pem_x509_certificate(certs.path("cert").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["hub.local"]
    assert cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) > datetime.timedelta(days=800)
    for key in ("ca_key", "key"):
        assert oct(os.stat(certs.path(key)).st_mode & 0o777) == "0o600"
    before = certs.path("cert").read_bytes()
    certs.ensure(["hub.local"])
    assert certs.path("cert").read_bytes() == before  # already covered: left alone
    assert certs.ensure(["10.0.0.2"]) == ["10.0.0.2", "127.0.0.1", "hub.local"]  # a new address: re-issued
    assert x509.load_pem_x509_certificate(certs.path("ca").read_bytes()) == ca  # by the same CA


def https(url, ca, body=None, token=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def start(tmp_path, mport, hport, broker_url=None, extra=()):
    hub = HubProcess(tmp_path, mport, hport, broker_url, ["--tls", "--auth", *extra])
    ca = tmp_path / "data" / "tls" / "ca.pem"

    def healthy():
        assert hub.alive(), hub.log()[-3000:]
        try:
            return ca.exists() and https("https://127.0.0.1:%d/api/health" % hport, ca)[0] == 200
        except (OSError, ValueError):
            return False
    try:
        wait_until(healthy, 30, "the hub's health over HTTPS")
    except AssertionError:
        hub.stop()
        raise
    return hub, ca


def tls_client(port, ca, creds, client_id):
    """A paho client over TLS trusting the hub's CA; (client, received payloads) once subscribed
    to its feedback, or None if the broker refused it."""
    got, codes, subs = [], [], []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.tls_set(ca_certs=str(ca))
    c.username_pw_set(creds["username"], creds["password"])
    c.on_connect = lambda cl, u, f, rc, p: codes.append(rc.value)
    c.on_subscribe = lambda *a: subs.append(1)
    c.on_message = lambda cl, u, m: got.append(json.loads(m.payload))
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    wait_until(lambda: codes, WAIT_S, "CONNACK over TLS")
    if codes != [0]:
        c.disconnect()
        c.loop_stop()
        return None
    c.subscribe(T("table", creds["id"], "feedback"), 1)
    wait_until(lambda: subs, WAIT_S, "SUBACK")
    return c, got


def plain_mqtt_gets_nowhere(port):
    """A plain MQTT CONNECT to a TLS port never gets a CONNACK."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x1e\x00\x00")
        try:
            reply = s.recv(4)
        except (socket.timeout, ConnectionResetError):
            reply = b""
    assert not reply.startswith(b"\x20"), reply


def register(hub_port, ca, token, kind, dev):
    status, creds = https("https://127.0.0.1:%d/api/devices" % hub_port, ca, {"kind": kind, "id": dev}, token)
    assert status == 201, creds
    assert creds["broker"]["ca"] == ca.read_text()  # what provisioning writes into the device's config
    return creds


def call_answered(port, ca, creds):
    dev = creds["id"]
    c, got = wait_until(lambda: tls_client(port, ca, creds, "rfm-demo-table-%s" % dev), WAIT_S,
                        "a TLS connection the broker accepts")
    try:
        call = "%s-1" % dev
        c.publish(T("table", dev, "call"), json.dumps({"id": call, "action": "raise", "type": "water"}), qos=1)
        wait_until(lambda: any(p["id"] == call for p in got), WAIT_S, "feedback over TLS")
    finally:
        c.disconnect()
        c.loop_stop()


def test_embedded_broker_and_api_over_tls_with_paho_and_the_firmware(tmp_path):
    mport, hport = free_port(), free_port()
    hub, ca = start(tmp_path, mport, hport)
    device = None
    try:
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the HTTPS port
            urllib.request.urlopen("http://127.0.0.1:%d/api/health" % hport, timeout=5).read()
        plain_mqtt_gets_nowhere(mport)
        token = (tmp_path / "data" / "auth" / "admin.token").read_text().strip()
        t1, t2 = register(hport, ca, token, "table", "T1"), register(hport, ca, token, "table", "T2")
        call_answered(mport, ca, t1)
        # the firmware under MicroPython: TLS to the hub, trusting only the CA from its config
        device = SimDevice("table", "T2", mport, tmp_path, broker={
            "host": "127.0.0.1", "port": mport, "user": t2["username"], "password": t2["password"],
            "ca": t2["broker"]["ca"]}).start()
        device.wait_for(lambda s: s["connected"], 20, "T2's firmware connected over TLS")
        device.press("water")
        device.wait_for(lambda s: s["app"]["calls"].get("water", [0, 0])[1] == "seen", WAIT_S, "feedback")
        # a device given some other CA refuses the hub
        device.stop()
        other = Certs(tmp_path / "other")
        other.ensure(["127.0.0.1"])
        device = SimDevice("table", "T2", mport, tmp_path / "other", broker={
            "host": "127.0.0.1", "port": mport, "user": t2["username"], "password": t2["password"],
            "ca": other.ca_pem()}).start()
        device.wait_log("not correctly signed by the trusted CA", 20)
        assert not device.state()["connected"]
    finally:
        if device:
            device.stop()
        assert hub.stop() == 0, hub.log()[-3000:]


@pytest.mark.skipif(not HAVE_MOSQUITTO, reason="mosquitto not installed")
def test_mosquitto_listener_over_tls(tmp_path):
    mport, hport = free_port(), free_port()
    data = tmp_path / "data"
    certs = Certs(data)
    certs.ensure(["127.0.0.1"])
    Access(data, "demo", listener=("127.0.0.1", mport), tls=certs.files()).write([])
    conf = (data / "auth" / "mosquitto.conf").read_text()
    assert "cafile %s" % certs.path("ca") in conf and "keyfile %s" % certs.path("key") in conf
    broker = _mosquitto(mport, str(tmp_path), str(data / "auth"))
    hub = None
    try:
        hub, ca = start(tmp_path, mport, hport, "mqtt://127.0.0.1:%d" % mport,
                        ["--broker-reload", "kill -HUP %d" % broker.pid])
        plain_mqtt_gets_nowhere(mport)
        token = (data / "auth" / "admin.token").read_text().strip()
        t1 = register(hport, ca, token, "table", "T1")
        call_answered(mport, ca, t1)
    finally:
        if hub:
            assert hub.stop() == 0, hub.log()[-3000:]
        stop_process(broker)


def test_provisioning_writes_the_ca_into_the_device_config(tmp_path):
    from firmware import flash
    certs = Certs(tmp_path)
    certs.ensure(["127.0.0.1"])
    reg = {"site": "demo", "username": "table/T1", "password": "pw", "broker": {"port": 8883, "ca": certs.ca_pem()}}
    cfg = flash.make_config("table", "T1", reg, "192.168.1.10", "resto", "psk")
    assert cfg["broker"]["ca"] == certs.ca_pem() and cfg["broker"]["port"] == 8883
    with pytest.raises(flash.FlashError, match="broker.ca must be the hub's CA certificate"):
        flash.make_config("table", "T1", dict(reg, broker={"port": 8883, "ca": "not a certificate"}), "h", "s", "p")
    assert "ca" not in flash.make_config("table", "T1", dict(reg, broker={"port": 1883}), "h", "s", "p")["broker"]
