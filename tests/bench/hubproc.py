"""The real hub (`python -m hub`) as a child process, for the benchmark, rush and faults.

    hub = Hub(workdir, site="bench")                       # embedded amqtt on a free port
    hub = Hub(workdir, site="bench", broker=(host, port))  # --broker mqtt://host:port
    hub.start(); hub.mqtt_port; hub.get("/api/health"); hub.kill(); hub.start()  # same data

RFM_HUB_ROOT points at another checkout of the hub to measure instead of this one.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import launch

ROOT = os.environ.get("RFM_HUB_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class Hub:
    def __init__(self, workdir, site="bench", broker=None, extra=(), log_level="INFO", python=None,
                 mqtt_port=None):
        """extra: more arguments for the hub (e.g. --floor FILE --menu FILE); mqtt_port: the
        embedded broker's port (default: a free one)."""
        self.workdir = workdir
        self.extra = list(extra)
        self.site = site
        self.broker = broker
        self.log_level = log_level
        self.python = python or sys.executable
        self.data_dir = os.path.join(workdir, "data")
        self.db_path = os.path.join(self.data_dir, "hub.sqlite3")
        self.log_path = os.path.join(workdir, "hub.log")
        self.mqtt_port = broker[1] if broker else (mqtt_port or launch.free_port())
        self.http_port = launch.free_port()
        self.proc = None
        self.starts = 0

    @property
    def pid(self):
        return self.proc.pid

    def command(self):
        cmd = [self.python, "-m", "hub", "--site", self.site, "--data-dir", self.data_dir,
               "--http-port", str(self.http_port), "--log-level", self.log_level]
        if self.broker:
            cmd += ["--broker", "mqtt://%s:%d" % self.broker]
        else:
            cmd += ["--mqtt-port", str(self.mqtt_port)]
        return cmd + self.extra

    def start(self, timeout=30.0):
        """Start (again, on the same data and ports) and wait until /api/health is 200."""
        self.launch()
        end = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > end:
                self.kill()
                raise RuntimeError("hub not healthy within %.0f s:\n%s" % (timeout, self.log_tail()))
            time.sleep(0.05)
        return self

    def launch(self):
        """Start the process and return at once (see healthy())."""
        os.makedirs(self.workdir, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(b"--- start %d\n" % (self.starts + 1))
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.starts += 1
        return self

    def healthy(self):
        """/api/health answers 200; raises if the process has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError("hub exited with %s:\n%s" % (self.proc.returncode, self.log_tail()))
        try:
            return self.get("/api/health", timeout=2.0)[0] == 200
        except (OSError, ValueError):
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def get(self, path, timeout=5.0):
        return self.request("GET", path, timeout=timeout)

    def request(self, method, path, body=None, timeout=5.0, headers=None):
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http_port, path), data=data,
                                     method=method, headers=dict(headers or {}))
        if data is not None:
            req.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read().decode("utf-8") or "null")
        except urllib.error.HTTPError as err:
            raw = err.read().decode("utf-8", "replace")
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw

    def online(self):
        """How many devices the hub holds online."""
        return sum(1 for d in self.get("/api/devices")[1]["devices"] if d["online"])

    def kill(self):
        """SIGKILL: no shutdown, nothing flushed."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout=15.0):
        """SIGTERM and wait; returns the exit code."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return None if self.proc is None else self.proc.returncode

    def log_tail(self, n=30):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def log_count(self, text):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return sum(line.count(text) for line in f)
        except OSError:
            return 0

    def log_lines(self, text, n=5):
        """The first n log lines holding text."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return [line.rstrip() for line in f if text in line][:n]
        except OSError:
            return []
