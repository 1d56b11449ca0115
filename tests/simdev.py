"""Run real device firmware (the compiled .mpy bundle) under the MicroPython
unix port with an ESP32-sized heap, and drive it over the sim control channel."""
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import tempfile

from tests.brokers import free_port, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAP = "112000"
APP_OF = {"table": "table_button", "pager": "waiter_pager", "kds": "kitchen_display"}
_bundles = {}


def micropython():
    local = os.path.join(ROOT, ".venv", "bin", "micropython")
    return local if os.path.exists(local) else shutil.which("micropython")


def bundle(app):
    """Build every app's bundle once per test process; return the app's dir."""
    if not _bundles:
        spec = importlib.util.spec_from_file_location("fw_build", os.path.join(ROOT, "firmware", "build.py"))
        build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build)
        out = tempfile.mkdtemp(prefix="rfm-fw-")
        for a in build.APPS:
            _bundles[a] = build.build(a, out, list(build.BOARDS))[0]
    return _bundles[app]


def mp_env(path):
    env = dict(os.environ)
    env["MICROPYPATH"] = ".frozen:" + path  # .frozen holds asyncio on the unix port
    return env


class SimDevice:
    """One simulated device. extra config keys go straight into config.json."""

    def __init__(self, kind, dev_id, broker_port, workdir, site="demo", **extra):
        self.kind = kind
        self.id = dev_id
        self.dir = os.path.join(str(workdir), dev_id)
        os.makedirs(self.dir, exist_ok=True)
        self.ctl_port = free_port()
        self.cfg = {"kind": kind, "id": dev_id, "site": site, "board": "sim",
                    "ctl_port": self.ctl_port, "data": os.path.join(self.dir, "data"),
                    "hb": 30, "backoff": 4,
                    "broker": {"host": "127.0.0.1", "port": broker_port,
                               "user": dev_id, "password": "pw-" + dev_id},
                    "wifi": {"ssid": "", "psk": ""}}
        self.cfg.update(extra)
        self.config_path = os.path.join(self.dir, "config.json")
        self.log_path = os.path.join(self.dir, "stdout.log")
        self.proc = None
        self._sock = None
        self._file = None

    def start(self, timeout=15):
        with open(self.config_path, "w") as f:
            json.dump(self.cfg, f)
        path = bundle(APP_OF[self.kind])
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([micropython(), "-X", "heapsize=" + HEAP, "main.py", self.config_path],
                                     cwd=path, env=mp_env(path), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until(self._ctl_ready, timeout, "%s control port\n%s" % (self.id, self.log_tail))
        return self

    def _ctl_ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("%s exited with %s:\n%s" % (self.id, self.proc.returncode, self.log_tail))
        try:
            self._connect()
            return True
        except OSError:
            return False

    def _connect(self):
        self._sock = socket.create_connection(("127.0.0.1", self.ctl_port), timeout=5)
        self._file = self._sock.makefile("rwb")

    def request(self, req):
        """One newline-delimited JSON request/reply on the control channel."""
        if self._file is None:
            self._connect()
        self._file.write(json.dumps(req).encode() + b"\n")
        self._file.flush()
        line = self._file.readline()
        if not line:
            raise AssertionError("%s closed its control channel:\n%s" % (self.id, self.log_tail))
        return json.loads(line)

    def press(self, name):
        rep = self.request({"press": name})
        assert rep == {"ok": True}, rep
        return rep

    def state(self):
        return self.request({"get": "state"})

    def wait_for(self, pred, timeout=10.0, what=None):
        """Poll state() until pred(state) holds; return that state."""
        def check():
            s = self.state()
            return s if pred(s) else None
        try:
            return wait_until(check, timeout, what or "state condition on %s" % self.id)
        except AssertionError as e:
            raise AssertionError("%s; last state %s\n%s" % (e, self.state(), self.log_tail))

    def wait_log(self, text, timeout=10.0):
        return wait_until(lambda: text in self.log, timeout, "%r in %s log" % (text, self.id))

    @property
    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def log_tail(self):
        return "--- %s stdout (tail) ---\n%s" % (self.id, "\n".join(self.log.splitlines()[-40:]))

    def stop(self, kill=False):
        """Stop the device; kill=True is a power cut (SIGKILL)."""
        if self._file:
            for c in (self._file, self._sock):
                try:
                    c.close()
                except OSError:
                    pass
            self._file = self._sock = None
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            self.proc.wait(5)
