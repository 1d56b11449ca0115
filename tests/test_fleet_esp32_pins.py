"""The compiled esp32 board (boards/esp32.mpy) takes its pins from the hardware pin map
copied to the device as pins.json. Runs under MicroPython with stand-ins for the
machine, esp32 and network modules that record what the board asks of them."""
import json
import os
import shutil
import subprocess

import pytest

from tests.simdev import HEAP, ROOT, bundle, micropython

STUBS = {
    "machine.py": '''
calls = []
DEEPSLEEP_RESET = 4
class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    levels = {}
    def __init__(self, n, mode=None, pull=None, value=None):
        self.n = n
        calls.append(["pin", n, mode, pull])
        if value is not None:
            Pin.levels[n] = value
    def value(self, v=None):
        if v is None:
            return Pin.levels.get(self.n, 0)
        Pin.levels[self.n] = v
class ADC:
    ATTN_11DB = 3
    def __init__(self, pin):
        calls.append(["adc", pin.n])
    def atten(self, a):
        pass
    def read_uv(self):
        return 1900000
class I2C:
    def __init__(self, id, sda, scl, freq):
        calls.append(["i2c", id, sda.n, scl.n, freq])
    def writeto(self, addr, data):
        calls.append(["i2c_to", addr])
    def writevto(self, addr, parts):
        pass
def reset_cause():
    return DEEPSLEEP_RESET
def deepsleep():
    calls.append(["deepsleep"])
''',
    "esp32.py": '''
import machine
WAKEUP_ALL_LOW = 0
WAKEUP_ANY_HIGH = 1
def wake_on_ext1(pins, level):
    machine.calls.append(["ext1", [p.n for p in pins], level])
def wake_on_ext0(pin, level):
    machine.calls.append(["ext0", pin.n, level])
''',
    "network.py": '''
STA_IF = 0
class WLAN:
    def __init__(self, i):
        pass
''',
}

SCRIPT = '''
import json, machine
from boards.esp32 import Board
kind, buttons, leds = %r
b = Board({"kind": kind, "wifi": {"ssid": "s", "psk": "p"}, "data": "data"})
out = {"buttons": {}, "leds": {}}
for name, gpio in buttons.items():
    read = b.button_pin(name)
    machine.Pin.levels[gpio] = 1
    high = read()
    machine.Pin.levels[gpio] = 0
    out["buttons"][name] = [high, read()]
for name, gpio in leds.items():
    lit = b.led_pin(name)
    lit(True)
    on = machine.Pin.levels[gpio]
    lit(False)
    out["leds"][name] = [on, machine.Pin.levels[gpio]]
if kind == "pager":
    b.display()
out["battery"] = b.battery()
machine.calls = [c for c in machine.calls if c[0] != "pin"]
b.deepsleep()
out["calls"] = machine.calls
print(json.dumps(out))
'''


def run_board(tmp_path, model, app):
    pins = json.load(open(os.path.join(ROOT, "hardware", "pins", model + ".json")))
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
    shutil.copy(os.path.join(ROOT, "hardware", "pins", model + ".json"), tmp_path / "pins.json")
    (tmp_path / "t.py").write_text(SCRIPT % ((pins["kind"], pins["buttons"], pins.get("leds", {})),))
    env = dict(os.environ, MICROPYPATH="%s:%s:.frozen" % (stubs, bundle(app)))
    out = subprocess.run([micropython(), "-X", "heapsize=" + HEAP, "t.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return pins, json.loads(out.stdout.strip().splitlines()[-1])


def test_table_button_pins_come_from_its_pin_map(tmp_path):
    pins, got = run_board(tmp_path, "table_button", "table_button")
    # active-high buttons: pressed reads high
    assert got["buttons"] == {name: [True, False] for name in pins["buttons"]}
    assert got["leds"] == {name: [1, 0] for name in pins["leds"]}
    assert got["battery"] == 55  # 1.9 V at the ADC x 2.0 divider = 3.8 V
    assert ["ext1", pins["wake"], 1] in got["calls"] and ["deepsleep"] in got["calls"]


def test_waiter_pager_pins_come_from_its_pin_map(tmp_path):
    pins, got = run_board(tmp_path, "waiter_pager", "waiter_pager")
    assert got["buttons"] == {name: [False, True] for name in pins["buttons"]}  # active low
    i2c = pins["i2c"]
    assert ["i2c", i2c["id"], i2c["sda"], i2c["scl"], i2c["freq"]] in got["calls"]
    assert ["i2c_to", pins["oled"]["addr"]] in got["calls"]
    assert ["ext0", pins["wake"][0], 0] in got["calls"]


def test_wrong_or_missing_pin_map_is_named(tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text)
    env = dict(os.environ, MICROPYPATH="%s:%s:.frozen" % (stubs, bundle("table_button")))
    script = "from boards.esp32 import Board\nBoard({'kind': 'table', 'wifi': {}, 'data': 'data'})\n"
    (tmp_path / "t.py").write_text(script)
    out = subprocess.run([micropython(), "t.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "no pin map in pins.json" in out.stdout + out.stderr
    shutil.copy(os.path.join(ROOT, "hardware", "pins", "waiter_pager.json"), tmp_path / "pins.json")
    out = subprocess.run([micropython(), "t.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert "is a pager pin map, not table" in out.stdout + out.stderr


pytestmark = pytest.mark.skipif(micropython() is None, reason="micropython not installed")
