"""firmware/flash.py: the copy-and-configure part against a real MicroPython REPL (the unix
port on a pty, reached by mpremote as a serial port), registration with a real hub, and the
errors a technician meets. The esptool step is checked up to the command line it builds."""
import json
import os
import pty
import select
import subprocess
import sys
import threading
import tty

import paho.mqtt.client as mqtt
import pytest
import serial

from firmware import flash
from tests.brokers import free_port, start_hub, wait_until
from tests.simdev import ROOT, micropython

FLASH = os.path.join(ROOT, "firmware", "flash.py")


class PtyMicroPython:
    """The MicroPython unix port at a REPL on one pty; `path` is a second pty relayed to it,
    so mpremote opens it like a USB serial port (socat's PTY,rawer in a few lines)."""

    def __init__(self, cwd):
        self.cwd = cwd
        dev_m, dev_s = pty.openpty()
        tty.setraw(dev_s)  # no \n -> \r\n translation: mpremote expects the bytes as sent
        self.host_m, host_s = pty.openpty()
        tty.setraw(host_s)
        self.path = os.ttyname(host_s)
        self._host_s = host_s
        self.proc = subprocess.Popen([micropython()], stdin=dev_s, stdout=dev_s, stderr=dev_s, cwd=cwd,
                                     start_new_session=True)
        os.close(dev_s)
        self.dev_m = dev_m
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.dev_m, self.host_m], [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                os.write(self.host_m if fd == self.dev_m else self.dev_m, data)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.proc.kill()
        self.proc.wait(5)
        for fd in (self.dev_m, self.host_m, self._host_s):
            os.close(fd)


def run_flash(*args, env=None):
    e = dict(os.environ, RFM_WIFI_PSK="wifi-key-密码")
    e.update(env or {})
    return subprocess.run([sys.executable, FLASH, *args], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env=e)


@pytest.fixture
def hub(tmp_path):
    h = start_hub(tmp_path, free_port(), free_port(), extra=["--auth"])
    h.token = (tmp_path / "data" / "auth" / "admin.token").read_text().strip()
    yield h
    assert h.stop() == 0, h.log()[-3000:]


@pytest.fixture
def board(tmp_path):
    d = tmp_path / "flash"
    d.mkdir()
    b = PtyMicroPython(str(d))
    yield b
    b.close()


def test_provisions_a_micropython_device_over_its_repl(hub, board):
    out = run_flash("--port", board.path, "--kind", "table", "--id", "T7", "--skip-flash", "--hub", hub.http,
                    "--token", hub.token, "--wifi-ssid", "resto", "--no-reset")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "100%" in out.stdout  # the progress bar ran to the end
    root = board.cwd
    for path in ("main.py", "pins.json", "config.json", "app/VERSION", "app/runtime/config.mpy",
                 "app/runtime/ota.mpy", "app/boards/esp32.mpy", "app/apps/table_button.mpy"):
        assert os.path.exists(os.path.join(root, path)), path
    with open(os.path.join(ROOT, "hardware", "pins", "table_button.json"), "rb") as f, \
            open(os.path.join(root, "pins.json"), "rb") as g:
        assert f.read() == g.read()
    with open(os.path.join(root, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    assert cfg["id"] == "T7" and cfg["board"] == "esp32" and cfg["wifi"] == {"ssid": "resto", "psk": "wifi-key-密码"}
    assert cfg["broker"]["host"] == "127.0.0.1" and cfg["broker"]["port"] == hub.mqtt_port
    assert cfg["broker"]["user"] == "table/T7"
    # flash.py had the device read its config back; read it again with the firmware's own
    # loader, from the files that landed, under MicroPython
    assert "verify: device read config.json back: table T7 demo 127.0.0.1 %d esp32" % hub.mqtt_port in out.stdout
    code = ("import sys\nsys.path.insert(0, 'app')\nfrom runtime import config\n"
            "c = config.load('config.json')\nprint(c['broker']['user'], c['hb'], c['wifi']['psk'])")
    back = subprocess.run([micropython(), "-c", code], cwd=root, capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, MICROPYPATH=".frozen"))
    assert back.stdout.split() == ["table/T7", "30", "wifi-key-密码"], back.stdout + back.stderr
    # the hub knows it, and the credentials it issued open the broker (which runs with --auth)
    row = [d for d in hub.get("/api/fleet")[1]["devices"] if d["id"] == "T7"][0]
    assert row["registered"] and row["model"] == "table_button" and not row["online"]
    rc = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set(cfg["broker"]["user"], cfg["broker"]["password"])
    c.on_connect = lambda *a: rc.append(a[3].value)
    c.connect("127.0.0.1", hub.mqtt_port)
    c.loop_start()
    try:
        wait_until(lambda: rc, 10, "CONNACK")
        assert rc == [0]
    finally:
        c.loop_stop()
        c.disconnect()


def test_reprovisioning_replaces_the_old_install(hub, board):
    args = ["--port", board.path, "--kind", "table_button", "--id", "T8", "--skip-flash", "--hub", hub.http,
            "--token", hub.token, "--wifi-ssid", "resto", "--no-reset"]
    assert run_flash(*args).returncode == 0
    with open(os.path.join(board.cwd, "app.old"), "w") as f:
        f.write("left over")
    first = json.load(open(os.path.join(board.cwd, "config.json")))
    out = run_flash(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    again = json.load(open(os.path.join(board.cwd, "config.json")))
    assert again["broker"]["password"] != first["broker"]["password"]  # a new password was issued
    assert not os.path.exists(os.path.join(board.cwd, "app.old"))


def test_clear_errors(hub, board, tmp_path):
    base = ["--kind", "table", "--id", "T9", "--skip-flash", "--wifi-ssid", "resto", "--no-reset",
            "--token", hub.token]
    out = run_flash("--port", "/dev/ttyNOPE0", "--hub", hub.http, *base)
    assert out.returncode == 1 and "no device on /dev/ttyNOPE0" in out.stderr
    with serial.Serial(board.path, exclusive=True):
        out = run_flash("--port", board.path, "--hub", hub.http, *base)
    assert out.returncode == 1 and "is busy" in out.stderr, out.stderr
    out = run_flash("--port", board.path, "--hub", "http://127.0.0.1:%d" % free_port(), *base)
    assert out.returncode == 1 and "hub unreachable" in out.stderr
    out = run_flash("--port", board.path, "--hub", hub.http, *base[:-2])
    assert out.returncode == 1 and "HTTP 401" in out.stderr  # --auth hub, no token
    out = run_flash("--port", board.path, "--hub", hub.http, "--kind", "kds", "--id", "K1", "--skip-flash",
                    "--wifi-ssid", "x")
    assert out.returncode == 2 and "--model" in out.stderr
    image = tmp_path / "s3.bin"
    image.write_bytes(bytes([0xE9] + [0] * 11 + [9, 0]) + bytes(4096))  # header: chip id 9, ESP32-S3
    out = run_flash("--port", board.path, "--hub", hub.http, "--kind", "table", "--id", "T9", "--firmware",
                    str(image), "--chip", "esp32", "--wifi-ssid", "x")
    assert out.returncode == 1 and "wrong chip" in out.stderr and "esp32s3" in out.stderr
    # a device on the port that is not an ESP bootloader (here: MicroPython's REPL)
    image.write_bytes(bytes([0xE9] + [0] * 15) + bytes(4096))
    out = run_flash("--port", board.path, "--hub", hub.http, "--kind", "table", "--id", "T9", "--firmware",
                    str(image), "--wifi-ssid", "x", "--token", hub.token)
    assert out.returncode == 1 and "bootloader does not answer" in out.stderr, out.stderr


def test_detected_chip_must_match_the_image(monkeypatch, tmp_path):
    image = tmp_path / "esp32.bin"
    image.write_bytes(bytes([0xE9] + [0] * 15) + bytes(64))
    a = flash.parse_args(["--port", "/dev/null", "--kind", "table", "--id", "T1", "--firmware", str(image),
                          "--wifi-ssid", "x", "--wifi-psk", "y"])
    monkeypatch.setattr(flash, "hub_request", lambda *a, **k: {"site": "demo"})
    monkeypatch.setattr(flash, "detect_chip", lambda port: "esp32c3")
    with pytest.raises(flash.FlashError, match="wrong chip: /dev/null has an esp32c3"):
        flash.run(a)


@pytest.mark.parametrize("chip,offset", [("esp32", "0x1000"), ("esp32s2", "0x1000"), ("esp32s3", "0x0"),
                                         ("esp32c3", "0x0"), ("esp32c6", "0x0")])
def test_esptool_command_line(chip, offset):
    cmd = flash.esptool_cmd(chip, "/dev/ttyUSB0", 460800, "mp.bin", python="py")
    assert cmd == ["py", "-m", "esptool", "--chip", chip, "--port", "/dev/ttyUSB0", "--baud", "460800",
                   "--before", "default-reset", "--after", "hard-reset", "write-flash", "--erase-all", offset,
                   "mp.bin"]


def test_dry_run_touches_nothing(tmp_path):
    image = tmp_path / "esp32.bin"
    image.write_bytes(bytes([0xE9] + [0] * 15) + bytes(64))
    out = run_flash("--port", "/dev/ttyNOPE0", "--kind", "pager", "--id", "P9", "--firmware", str(image),
                    "--hub", "http://127.0.0.1:%d" % free_port(), "--wifi-ssid", "x", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "write-flash --erase-all 0x1000 %s" % image in out.stdout
    assert "pins.json" in out.stdout and "app/apps/waiter_pager.mpy" in out.stdout


def test_help():
    out = run_flash("--help")
    assert out.returncode == 0 and "--dry-run" in out.stdout and "write-flash" in out.stdout


pytestmark = pytest.mark.skipif(micropython() is None, reason="micropython not installed")
