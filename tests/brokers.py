"""Brokers and MQTT helpers for tests: a real Mosquitto on 127.0.0.1 and a
paho-mqtt recorder that plays the hub."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout=10.0, what="condition", interval=0.05):
    """Poll fn() until it returns something truthy; return it or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def _port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def start_mosquitto(port, conf_dir, persist=False, users=None):
    """Start Mosquitto on 127.0.0.1:port with its config, log (and, with
    persist, its database) in conf_dir; users {name: password} turns on
    authentication. Returns the Popen; stop it with stop_process()."""
    os.makedirs(conf_dir, exist_ok=True)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    # the default max_queued_messages 1000 silently drops QoS 1 behind a slow subscriber
    lines = ["listener %d 127.0.0.1" % port, "log_dest stdout", "log_type error",
             "log_type warning", "log_type notice", "max_queued_messages 100000"]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to 'mosquitto' and cannot read conf_dir
    if users:
        pw = os.path.join(conf_dir, "passwd")
        with open(pw, "w") as f:
            f.write("")
        for name, password in users.items():
            subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd",
                            "-b", pw, name, password], check=True)
        lines += ["allow_anonymous false", "password_file " + pw]
    else:
        lines.append("allow_anonymous true")
    if persist:
        lines += ["persistence true", "persistence_location " + conf_dir.rstrip("/") + "/"]
    else:
        lines.append("persistence false")
    conf = os.path.join(conf_dir, "mosquitto-%d.conf" % port)
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    log = open(os.path.join(conf_dir, "mosquitto-%d.log" % port), "ab")
    proc = subprocess.Popen([binary, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_until(lambda: proc.poll() is not None or _port_open(port), 10, "mosquitto on %d" % port)
    except AssertionError:
        stop_process(proc)
        raise
    if proc.poll() is not None:
        raise RuntimeError("mosquitto exited with %s; see %s" % (proc.returncode, conf_dir))
    return proc


def stop_process(proc, timeout=5):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Recorder:
    """paho client that subscribes to topics (QoS 1) and records every message
    as (topic, payload bytes, retain, dup). With clean=False its session (and
    messages queued for it) survive in a persistent broker."""

    def __init__(self, port, topics, client_id=None, clean=True, auth=None):
        self.msgs = []
        self.topics = list(topics)
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                             clean_session=clean)
        if auth:
            self.c.username_pw_set(*auth)
        self.c.reconnect_delay_set(0.2, 1)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self._subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not self.topics:
            self._subscribed.set()
        wait_until(lambda: self._subscribed.is_set() and self.c.is_connected(), 10,
                   "recorder connected and subscribed")

    def _on_connect(self, client, userdata, flags, rc, props):
        for t in self.topics:
            client.subscribe(t, 1)

    def _on_message(self, client, userdata, m):
        with self._lock:
            self.msgs.append((m.topic, m.payload, m.retain, m.dup))

    def matching(self, suffix=""):
        with self._lock:
            return [m for m in self.msgs if m[0].endswith(suffix)]

    def wait_msg(self, pred, timeout=10.0, what="message"):
        """First recorded (topic, json payload, retain) for which pred holds."""
        def find():
            with self._lock:
                msgs = list(self.msgs)
            for t, p, r, _d in msgs:
                try:
                    obj = json.loads(p)
                except ValueError:
                    continue
                if pred(t, obj, r):
                    return (t, obj, r)
            return None
        return wait_until(find, timeout, what)

    def publish(self, topic, payload, qos=1, retain=False):
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        self.c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class HubProcess:
    """`python -m hub` as a child process logging to <tmp_path>/hub.log.

    stop() sends SIGTERM and returns the exit code; get(path) returns (status, JSON)."""

    def __init__(self, tmp_path, mqtt_port, http_port, broker_url=None, extra=()):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.mqtt_port = mqtt_port
        self.http = "http://127.0.0.1:%d" % http_port
        self.log_path = os.path.join(str(tmp_path), "hub.log")
        cmd = [sys.executable, "-m", "hub", "--mqtt-port", str(mqtt_port), "--http-port", str(http_port),
               "--data-dir", os.path.join(str(tmp_path), "data"), *extra]
        if broker_url:
            cmd += ["--broker", broker_url]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def get(self, path):
        try:
            with urllib.request.urlopen(self.http + path, timeout=5) as resp:
                return resp.status, json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read().decode("utf-8"))

    def wait_ready(self, timeout=20.0):
        """Until /api/health says the hub is connected to its broker."""
        def healthy():
            if not self.alive():
                raise AssertionError("hub exited with %s:\n%s" % (self.proc.returncode, self.log()[-4000:]))
            try:
                return self.get("/api/health")[0] == 200
            except (OSError, ValueError):
                return False
        wait_until(healthy, timeout, "the hub's /api/health")

    def stop(self, timeout=15):
        stop_process(self.proc, timeout)
        return self.proc.returncode


def start_hub(tmp_path, mqtt_port, http_port, broker_url=None, extra=()):
    """Start the hub (embedded amqtt unless broker_url) and wait until it is ready."""
    hub = HubProcess(tmp_path, mqtt_port, http_port, broker_url, extra)
    try:
        hub.wait_ready()
    except Exception:
        hub.stop()
        raise
    return hub
