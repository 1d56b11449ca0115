#!/usr/bin/env python3
"""Take a blank ESP32 to a registered, working device in one command.

  make flash PORT=/dev/ttyUSB0 KIND=table ID=T12 FIRMWARE=ESP32_GENERIC-v1.xx.bin \\
             WIFI_SSID=restaurant HUB=http://192.168.1.10:8080       (Wi-Fi key: $RFM_WIFI_PSK)

Steps:
  1. check   the hub answers; the chip on the port is the one the MicroPython image is for
  2. flash   MicroPython with esptool write-flash at the chip family's offset
  3. register the device with the hub, which issues its own MQTT username and password
  4. copy    the app bundle (.mpy) to :app/, the board's pin map to :pins.json,
             config.json (Wi-Fi, hub address, device id, credentials), main.py last (mpremote)
  5. verify  the firmware's own config loader reads config.json back on the device
  6. reset   the device, then wait until the hub reports it online

--skip-flash re-provisions a device that already runs MicroPython; --dry-run prints
every step and command without touching the port or the hub.
"""
import argparse
import errno
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from hub import fleet  # noqa: E402
from hub.firmware import APP_OF, load_build  # noqa: E402

# Where the MicroPython image goes, per chip family (MicroPython's esp32 deploy notes).
OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0, "esp32c6": 0x0}
MODEL_OF = {"table": "table_button", "pager": "waiter_pager"}  # kds has two: pass --model
PINS_DIR = os.path.join(ROOT, "hardware", "pins")
EXIT_USAGE, EXIT_FAIL = 2, 1
CHUNK = 256


class FlashError(Exception):
    """A failure a technician can act on; the message says what and what to do."""


# --- progress ------------------------------------------------------------------
def bar(done, total, width=28):
    filled = width * done // total if total else width
    return "[%s%s] %3d%%" % ("#" * filled, "." * (width - filled), 100 * done // total if total else 100)


class Progress:
    """One plain-text line redrawn in place: [#####.....]  42%  what."""

    def __init__(self, total, out=sys.stdout):
        self.total = total
        self.done = 0
        self.out = out

    def show(self, extra, what):
        line = "\r  %s %6.1f/%.1f KB  %-40s" % (bar(self.done + extra, self.total), (self.done + extra) / 1024,
                                                self.total / 1024, what[-40:])
        self.out.write(line)
        self.out.flush()

    def add(self, n):
        self.done += n

    def end(self):
        self.out.write("\n")


def step(n, text):
    print("%d. %s" % (n, text))


# --- pieces that need no hardware (and are tested on their own) -----------------
def chip_name(name):
    """'ESP32-S3' -> 'esp32s3'."""
    return name.lower().replace("-", "")


def image_chip(path):
    """The chip family an ESP firmware image is built for, from its header."""
    from esptool.targets import CHIP_DEFS
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise FlashError("firmware image %s: %s" % (path, exc.strerror))
    if len(head) < 16 or head[0] != 0xE9:
        raise FlashError("%s is not an ESP32 firmware image (no 0xE9 header); download a MicroPython "
                         ".bin for your board" % path)
    chip_id = head[12] | head[13] << 8
    for name in OFFSETS:
        if CHIP_DEFS[name].IMAGE_CHIP_ID == chip_id:
            return name
    raise FlashError("%s is for chip id %d, none of %s" % (path, chip_id, ", ".join(OFFSETS)))


def esptool_cmd(chip, port, baud, image, python=sys.executable):
    """The esptool command line that writes MicroPython to a blank chip."""
    if chip not in OFFSETS:
        raise FlashError("chip %r: must be one of %s" % (chip, ", ".join(OFFSETS)))
    return [python, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud),
            "--before", "default-reset", "--after", "hard-reset",
            "write-flash", "--erase-all", "0x%x" % OFFSETS[chip], image]


def port_error(port, exc):
    """Turn an error opening the serial port into what the technician should do."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT or "No such file" in text or not os.path.exists(port):
        return FlashError("no device on %s: nothing is plugged in there (ls /dev/ttyUSB* /dev/ttyACM*)" % port)
    if code in (errno.EBUSY, errno.EAGAIN) or "busy" in text.lower() or "lock" in text.lower():
        return FlashError("port %s is busy: another program has it open (a serial monitor, mpremote, "
                          "ModemManager); close it and try again" % port)
    if code == errno.EACCES or "Permission denied" in text:
        return FlashError("no permission to open %s: add yourself to the dialout group" % port)
    return FlashError("cannot use %s: %s" % (port, text))


def device_files(bundle, model, config, version):
    """[(device path, bytes)] in copy order: the app, pins, config, then main.py."""
    files = []
    for dirpath, _dirs, names in sorted(os.walk(bundle)):
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(dirpath, name), bundle).replace(os.sep, "/")
            if rel in ("main.py", "VERSION"):
                continue
            with open(os.path.join(dirpath, name), "rb") as f:
                files.append(("app/" + rel, f.read()))
    files.append(("app/VERSION", version.encode()))
    with open(os.path.join(PINS_DIR, model + ".json"), "rb") as f:
        files.append(("pins.json", f.read()))
    files.append(("config.json", json.dumps(config, ensure_ascii=False).encode("utf-8")))
    with open(os.path.join(bundle, "main.py"), "rb") as f:
        files.append(("main.py", f.read()))
    return files


def make_config(kind, dev_id, reg, broker_host, wifi_ssid, wifi_psk):
    """config.json for the device, checked by the firmware's own loader."""
    from firmware.runtime import config as fwconfig
    cfg = {"kind": kind, "id": dev_id, "site": reg["site"], "board": "esp32", "pins": "pins.json",
           "broker": {"host": broker_host, "port": reg["broker"]["port"], "user": reg["username"],
                      "password": reg["password"]},
           "wifi": {"ssid": wifi_ssid, "psk": wifi_psk}}
    if reg["broker"].get("ca"):  # hub --tls: MQTT over TLS, trusting only the hub's CA
        cfg["broker"]["ca"] = reg["broker"]["ca"]
    try:
        return fwconfig.check(cfg)
    except fwconfig.ConfigError as exc:
        raise FlashError(str(exc))


def firmware_version():
    with open(os.path.join(HERE, "runtime", "device.py"), encoding="utf-8") as f:
        return re.search(r'^FW = "([^"]+)"', f.read(), re.M).group(1)


# --- the hub -------------------------------------------------------------------------
def hub_request(hub, method, path, body=None, token=None, timeout=10):
    try:
        return fleet.hub_request(method, hub.rstrip("/") + path, body, token, timeout)
    except fleet.HubError as err:
        raise FlashError(str(err))


# --- the serial port -------------------------------------------------------------------
def detect_chip(port, attempts=3):
    """The chip family on the port, via esptool's bootloader handshake."""
    import serial
    from esptool.cmds import detect_chip as esp_detect
    from esptool.util import FatalError
    if not os.path.exists(port):
        raise port_error(port, OSError(errno.ENOENT, "No such file"))
    try:
        esp = esp_detect(port, connect_attempts=attempts)
    except serial.SerialException as exc:
        raise port_error(port, exc)
    except FatalError as exc:
        if "Could not open" in str(exc):
            raise port_error(port, exc)
        raise FlashError("a device is on %s but the ESP32 bootloader does not answer (%s): hold IO0 low while "
                         "pulsing EN on J2, and check TX/RX" % (port, str(exc).splitlines()[0]))
    try:
        return chip_name(esp.CHIP_NAME)
    finally:
        esp._port.close()


def open_repl(port):
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport
    import serial
    if not os.path.exists(port):
        raise port_error(port, OSError(errno.ENOENT, "No such file"))
    try:  # mpremote reports every open failure alike: find out why first
        serial.Serial(port, 115200, exclusive=True).close()
        t = SerialTransport(port, baudrate=115200)
    except (serial.SerialException, OSError, TransportError) as exc:
        raise port_error(port, exc)
    try:
        t.enter_raw_repl(soft_reset=False)  # resume: keep what runs, no soft reset
    except TransportError as exc:
        t.close()
        raise FlashError("no MicroPython REPL on %s (%s): is MicroPython flashed? use --firmware" % (port, exc))
    return t


CLEAN = """
import os
def _rm(p):
    try:
        s = os.stat(p)
    except OSError:
        return
    if s[0] & 0x4000:
        for e in list(os.ilistdir(p)):
            _rm(p + '/' + e[0])
        os.rmdir(p)
    else:
        os.remove(p)
for p in ('main.py', 'app', 'app.new', 'app.old', 'app.try', 'config.json', 'pins.json'):
    _rm(p)
"""

VERIFY = """
import sys
if 'app' not in sys.path:
    sys.path.insert(0, 'app')
from runtime import config
c = config.load('config.json')
print(c['kind'], c['id'], c['site'], c['broker']['host'], c['broker']['port'], c['board'])
"""


def copy_files(port, files):
    """Clean the old install, write every file with a progress bar, verify the config."""
    t = open_repl(port)
    try:
        t.exec(CLEAN)
        made = set()
        prog = Progress(sum(len(d) for _, d in files))
        for path, data in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in made:
                    if not t.fs_exists(d):
                        t.fs_mkdir(d)
                    made.add(d)
            t.fs_writefile(path, data, CHUNK, lambda n, total, p=path: prog.show(n, p))
            prog.add(len(data))
            prog.show(0, path)
        prog.end()
        return t.exec(VERIFY).decode("utf-8", "replace").split()
    finally:
        try:
            t.exit_raw_repl()
        finally:
            t.close()


def reset_device(port):
    t = open_repl(port)
    try:
        t.exec_raw_no_follow("import machine\nmachine.reset()")
    finally:
        t.close()


# --- the command -------------------------------------------------------------------
def parse_args(argv):
    ap = argparse.ArgumentParser(prog="firmware/flash.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", required=True, help="serial port of the device, e.g. /dev/ttyUSB0")
    ap.add_argument("--kind", required=True,
                    help="table, pager or kds (or a hardware model such as table_button)")
    ap.add_argument("--id", required=True, dest="dev_id", help="device id, e.g. T12 (A-Z a-z 0-9 - _)")
    ap.add_argument("--model", help="pin map in hardware/pins (default: table_button, waiter_pager; "
                                    "kds needs kitchen_eink or kitchen_lcd)")
    ap.add_argument("--firmware", help="MicroPython image (.bin) to flash; its header names the chip")
    ap.add_argument("--skip-flash", action="store_true", help="the device already runs MicroPython")
    ap.add_argument("--chip", choices=sorted(OFFSETS),
                    help="chip family expected on the port (default: the one the image is for)")
    ap.add_argument("--baud", type=int, default=460800, help="esptool baud rate (default 460800)")
    ap.add_argument("--hub", default="http://127.0.0.1:8080", help="the hub's HTTP address (default %(default)s)")
    ap.add_argument("--broker-host", help="MQTT host the device connects to (default: the --hub host)")
    ap.add_argument("--token", help="the hub's admin token when it runs with --auth (default $RFM_HUB_TOKEN)")
    ap.add_argument("--wifi-ssid", default=os.environ.get("RFM_WIFI_SSID"), help="Wi-Fi network "
                    "(default $RFM_WIFI_SSID)")
    ap.add_argument("--wifi-psk", default=os.environ.get("RFM_WIFI_PSK"),
                    help="Wi-Fi key (default $RFM_WIFI_PSK; keeps it out of the shell history)")
    ap.add_argument("--bundle", help="an app dir built by firmware/build.py (default: build it now)")
    ap.add_argument("--version", help="firmware version the device reports (default: the runtime's FW)")
    ap.add_argument("--no-reset", action="store_true", help="leave the device at its REPL (bench tests)")
    ap.add_argument("--wait", type=int, default=90, help="seconds to wait for the device to come online "
                                                         "(default 90; 0 = do not wait)")
    ap.add_argument("--dry-run", action="store_true", help="print the steps and commands, touch nothing")
    a = ap.parse_args(argv)
    models = sorted(f[:-5] for f in os.listdir(PINS_DIR) if f.endswith(".json"))
    if a.kind in models:
        a.model = a.model or a.kind
        with open(os.path.join(PINS_DIR, a.kind + ".json")) as f:
            a.kind = json.load(f)["kind"]
    if a.kind not in APP_OF:
        ap.error("--kind %r: must be one of %s or a model (%s)" % (a.kind, ", ".join(APP_OF), ", ".join(models)))
    a.model = a.model or MODEL_OF.get(a.kind)
    if a.model is None:
        ap.error("--kind %s: say which hardware with --model (%s)" % (a.kind, ", ".join(models)))
    if a.model not in models:
        ap.error("--model %r: no hardware/pins/%s.json (have %s)" % (a.model, a.model, ", ".join(models)))
    with open(os.path.join(PINS_DIR, a.model + ".json")) as f:
        if json.load(f)["kind"] != a.kind:
            ap.error("--model %s is not a %s" % (a.model, a.kind))
    if not a.skip_flash and not a.firmware:
        ap.error("--firmware IMAGE.bin is needed to flash MicroPython (or --skip-flash)")
    if not a.wifi_ssid:
        ap.error("--wifi-ssid (or $RFM_WIFI_SSID) is needed: the device joins the restaurant's Wi-Fi")
    if a.wifi_psk is None:
        ap.error("the Wi-Fi key is needed: set $RFM_WIFI_PSK (or --wifi-psk)")
    a.token = a.token or os.environ.get("RFM_HUB_TOKEN")
    a.broker_host = a.broker_host or urllib.parse.urlsplit(a.hub).hostname
    if not a.broker_host:
        ap.error("--hub %r: expected http://HOST:PORT" % a.hub)
    a.version = a.version or firmware_version()
    return a


def build_bundle(a, tmp):
    if a.bundle:
        if not os.path.exists(os.path.join(a.bundle, "main.py")):
            raise FlashError("--bundle %s: not an app dir built by firmware/build.py (no main.py)" % a.bundle)
        return a.bundle
    build = load_build()
    app = APP_OF[a.kind]
    if app not in build.APPS:
        raise FlashError("no %s app in firmware/build.py yet" % app)
    return build.build(app, tmp, ["esp32"])[0]


def run(a):
    chip = None
    if not a.skip_flash:
        chip = image_chip(a.firmware)
        if a.chip and a.chip != chip:
            raise FlashError("wrong chip: %s is a MicroPython image for %s, not --chip %s" % (a.firmware, chip, a.chip))
    if a.dry_run:
        print("dry run: nothing is touched\n")
    step(1, "check: hub %s, chip on %s" % (a.hub, a.port))
    if not a.dry_run:
        health = hub_request(a.hub, "GET", "/api/health")
        print("   hub answers: site %s" % health.get("site"))
    if not a.skip_flash:
        if not a.dry_run:
            found = detect_chip(a.port)
            if found != chip:
                raise FlashError("wrong chip: %s has an %s, the image %s is for %s" % (a.port, found, a.firmware, chip))
            print("   chip: %s" % found)
        cmd = esptool_cmd(chip, a.port, a.baud, a.firmware)
        step(2, "flash MicroPython at 0x%x: %s" % (OFFSETS[chip], " ".join(cmd)))
        if not a.dry_run:
            done = subprocess.run(cmd)
            if done.returncode:
                raise FlashError("esptool failed (exit %d); see its output above" % done.returncode)
            time.sleep(3)  # MicroPython makes its file system on the first boot
    else:
        step(2, "flash: skipped (--skip-flash)")
    step(3, "register %s %s (model %s) with the hub" % (a.kind, a.dev_id, a.model))
    if a.dry_run:
        reg = {"site": "SITE", "username": "%s/%s" % (a.kind, a.dev_id), "password": "ISSUED-BY-THE-HUB",
               "broker": {"port": 1883}}
    else:
        reg = hub_request(a.hub, "POST", "/api/devices", {"kind": a.kind, "id": a.dev_id, "model": a.model},
                          a.token)
        print("   MQTT user %s (%s)" % (reg["username"], "new device" if reg["new"] else "new password"))
    cfg = make_config(a.kind, a.dev_id, reg, a.broker_host, a.wifi_ssid, a.wifi_psk)
    with tempfile.TemporaryDirectory(prefix="rfm-flash-") as tmp:
        files = device_files(build_bundle(a, tmp), a.model, cfg, a.version)
    step(4, "copy %d files (%.1f KB) to %s: app/ (fw %s), pins.json (%s), config.json, main.py"
         % (len(files), sum(len(d) for _, d in files) / 1024, a.port, a.version, a.model))
    if a.dry_run:
        for path, data in files:
            print("   %-32s %6d bytes" % (path, len(data)))
        step(5, "verify: the firmware's config loader reads config.json back")
        step(6, "reset, then wait up to %ds for %s %s online at the hub" % (a.wait, a.kind, a.dev_id))
        return 0
    got = copy_files(a.port, files)
    want = [a.kind, a.dev_id, reg["site"], a.broker_host, str(reg["broker"]["port"]), "esp32"]
    step(5, "verify: device read config.json back: %s" % " ".join(got))
    if got[-6:] != want:
        raise FlashError("the device read back %s, expected %s" % (" ".join(got), " ".join(want)))
    if a.no_reset:
        step(6, "reset: skipped (--no-reset); the device waits at its REPL")
        return 0
    reset_device(a.port)
    step(6, "reset; waiting up to %ds for the hub to see %s %s online" % (a.wait, a.kind, a.dev_id))
    deadline = time.monotonic() + a.wait
    while a.wait and time.monotonic() < deadline:
        rows = hub_request(a.hub, "GET", "/api/fleet?kind=" + a.kind)["devices"]
        if any(r["id"] == a.dev_id and r["online"] for r in rows):
            print("   %s %s is online: done" % (a.kind, a.dev_id))
            return 0
        time.sleep(2)
    if a.wait:
        raise FlashError("%s %s did not come online within %ds: check Wi-Fi %r and that the hub's broker "
                         "listens on the LAN (hub --bind 0.0.0.0)" % (a.kind, a.dev_id, a.wait, a.wifi_ssid))
    return 0


def main(argv=None):
    a = parse_args(argv)
    try:
        return run(a)
    except FlashError as exc:
        print("\nerror: %s" % exc, file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
