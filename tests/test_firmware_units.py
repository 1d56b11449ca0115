"""Firmware pieces run under MicroPython from the compiled bundle (112 kB heap),
plus the pager renderer on CPython."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

import protocol
from tests.brokers import Recorder, free_port, start_mosquitto, stop_process
from display import pager
from tests.simdev import HEAP, ROOT, bundle, micropython, mp_env


def run_mp(tmp_path, code, app="table_button", timeout=30):
    """Run code under MicroPython with the app's bundle on the path; return stdout lines."""
    script = tmp_path / "check.py"
    script.write_text(code)
    path = bundle(app)
    r = subprocess.run([micropython(), "-X", "heapsize=" + HEAP, str(script)], cwd=str(tmp_path),
                       env=mp_env(path), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


def test_bundle_is_compiled():
    path = bundle("waiter_pager")
    found = sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)
    assert "main.py" in found and "protocol/__init__.mpy" in found and "display/pager.mpy" in found
    assert [f for f in found if f.endswith(".py")] == ["main.py"]


REMAINING_LENGTHS = {0: "00", 127: "7f", 128: "8001", 16383: "ff7f", 16384: "808001",
                     2097151: "ffff7f", 2097152: "80808001", 268435455: "ffffff7f"}


def test_remaining_length_varint(tmp_path):
    code = """
import asyncio, binascii
from runtime.mqtt import MQTT, MQTTError, vlen
class R:  # a stream of bytes with readexactly()
    def __init__(self, b): self.b = b
    async def readexactly(self, n):
        if len(self.b) < n: raise EOFError
        out, self.b = self.b[:n], self.b[n:]
        return out
m = MQTT("x", "127.0.0.1", 1)
for n in %r:
    enc = vlen(n)
    print(n, binascii.hexlify(enc).decode(), asyncio.run(m._head(R(b"\\x30" + enc)))[1])
for bad in (268435456, -1):
    try:
        vlen(bad); print("no error")
    except MQTTError:
        print("rejected", bad)
try:
    asyncio.run(m._head(R(b"\\x30\\xff\\xff\\xff\\xff\\x01")))
except MQTTError as e:
    print("malformed", e)
""" % sorted(REMAINING_LENGTHS)
    out = run_mp(tmp_path, code)
    for line, n in zip(out, sorted(REMAINING_LENGTHS)):
        assert line == "%d %s %d" % (n, REMAINING_LENGTHS[n], n)
    assert out[-3:] == ["rejected 268435456", "rejected -1", "malformed malformed remaining length"]


def test_counter_reserves_blocks_and_survives_restart(tmp_path):
    code = """
from runtime.store import Counter
c = Counter("ctr", 4)
print([c.next() for _ in range(5)], open("ctr").read())
c = Counter("ctr", 4)
print(c.next(), open("ctr").read())
"""
    out = run_mp(tmp_path, code)
    assert out == ["[1, 2, 3, 4, 5] 9", "9 13"]


def test_config_errors_name_the_key(tmp_path):
    good = {"kind": "table", "id": "T1", "site": "demo", "board": "sim", "ctl_port": 1,
            "broker": {"host": "127.0.0.1", "port": 1883, "user": "T1", "password": "x"}}
    cases = {"nohost": dict(good, broker={"port": 1883, "user": "u", "password": "p"}),
             "noctl": {k: v for k, v in good.items() if k != "ctl_port"},
             "esp": dict(good, board="esp32"),
             "badid": dict(good, id="T 1"),
             "good": good}
    for name, cfg in cases.items():
        (tmp_path / (name + ".json")).write_text(json.dumps(cfg))
    code = """
from runtime import config
for n in %r:
    try:
        c = config.load(n + ".json"); print(n, "ok", c["hb"], c["data"])
    except config.ConfigError as e:
        print(n, e)
""" % sorted(cases)
    out = run_mp(tmp_path, code)
    assert out == ["badid config: device: character ' ' not allowed (A-Z a-z 0-9 - _)",
                   "esp config: missing key 'wifi.ssid'",
                   "good ok 30 data",
                   "noctl config: missing key 'ctl_port'",
                   "nohost config: missing key 'broker.host'"]


def test_mqtt_client_16k_payloads_and_oversize_skip(tmp_path):
    """The runtime client alone against Mosquitto: 16 KB in and out (3-byte
    remaining lengths), an oversize payload skipped with the link kept up."""
    port = free_port()
    proc = start_mosquitto(port, str(tmp_path / "mq"))
    rec = Recorder(port, ["t/out"])
    big_in = bytes(range(256)) * 64  # 16384 bytes
    code = """
import asyncio, hashlib, binascii
from runtime.mqtt import MQTT
m = MQTT("mp-unit", "127.0.0.1", %d)
got = []
m.on_message = lambda t, p: got.append((t, len(p), binascii.hexlify(hashlib.sha256(p).digest()).decode()))
m.subscribe("t/in", 1)
async def main():
    asyncio.create_task(m.run())
    m.publish("t/out", b"hello", 1)
    for _ in range(200):  # PUBACK after the SUBSCRIBE: the broker has the subscription
        if m.connected and not m.q: break
        await asyncio.sleep_ms(50)
    print("ready")
    for _ in range(400):
        if len(got) >= 2: break
        await asyncio.sleep_ms(50)
    for g in got: print(*g)
    m.publish("t/out", bytes(16000), 1)
    for _ in range(200):
        if not m.q: break
        await asyncio.sleep_ms(50)
    print("outbox", len(m.q))
    await m.disconnect()
asyncio.run(main())
""" % port
    script = tmp_path / "check.py"
    script.write_text(code)
    path = bundle("table_button")
    p = subprocess.Popen([micropython(), "-X", "heapsize=" + HEAP, str(script)], cwd=str(tmp_path),
                         env=mp_env(path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(20):
            if p.stdout.readline().strip() == "ready":
                break
        rec.publish("t/in", bytes(20000))  # over 16 KB: skipped
        rec.publish("t/in", big_in)
        rec.publish("t/in", "中文 ok".encode())
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        rec.close()
        stop_process(proc)
    lines = [l for l in out.splitlines() if not l[:1].isdigit()]
    assert lines == ["t/in 16384 " + hashlib.sha256(big_in).hexdigest(),
                     "t/in 9 " + hashlib.sha256("中文 ok".encode()).hexdigest(),
                     "outbox 0"], out
    assert "skipped 20000 byte payload" in out
    got = rec.matching("t/out")
    assert [m[1] for m in got] == [b"hello", bytes(16000)]


# --- pager renderer on CPython --------------------------------------------------
class Canvas:
    """Stand-in for framebuf: records calls."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name not in ("fill", "text", "fill_rect", "hline", "rect"):
            raise AttributeError(name)
        return lambda *a: self.calls.append((name,) + a)

    def texts(self):
        return [(c[1], c[2], c[3], c[4]) for c in self.calls if c[0] == "text"]


def _t(i, age=5, state="assigned"):
    return {"id": "T%d-1" % i, "kind": "call", "table": "T%d" % i, "type": "water",
            "prio": 3, "age": age, "state": state, "page": 0}


def test_render_rows_selection_and_age():
    c = Canvas()
    tasks = [_t(12, 59), _t(4, 3599, "acked"), _t(7, 7200)]
    pager.render(c, tasks, 1, now=1000, since=998, online=False)
    texts = c.texts()
    assert texts[0][0] == "3 tasks" and texts[1][0] == "OFF"
    rows = texts[2:]
    assert [r[0] for r in rows] == ["T12  water    1m", "T4   water  * 1h", "T7   water    2h"]
    assert all(len(r[0]) <= 16 for r in rows)
    # the selected row is drawn inverted: filled bar, text in colour 0
    assert [r[3] for r in rows] == [1, 0, 1]
    bars = [cl for cl in c.calls if cl[0] == "fill_rect"]
    assert len(bars) == 1 and bars[0][2] <= rows[1][2] < bars[0][2] + bars[0][4]


def test_render_scrolls_to_keep_selection_visible_and_empty_queue():
    c = Canvas()
    tasks = [_t(i) for i in range(1, 8)]
    pager.render(c, tasks, 6, now=0)
    rows = [t[0] for t in c.texts()[2:]]
    assert len(rows) == pager.ROWS and rows[-1].startswith("T7")
    c = Canvas()
    pager.render(c, [], 0, now=0)
    assert [t[0] for t in c.texts()] == ["0 tasks", "ok", "no tasks"]


@pytest.mark.parametrize("table,typ", [("T123456", "napkins-long"), ("B2", "bill")])
def test_row_text_fits_sixteen_columns(table, typ):
    t = dict(_t(1), table=table, type=typ)
    assert len(pager.row_text(t, 86399)) == 16


def test_full_tasks_snapshot_fits_the_heap(tmp_path):
    """The largest valid tasks message decodes and renders within the 112 kB heap."""
    for note in range(80, 0, -1):  # longest notes that keep 20 tasks under 4096 bytes
        tasks = [dict(_t(i, 80000), id="T%02d-%030d" % (i, i), note="x" * note, type="napkins")
                 for i in range(20)]
        try:
            data = protocol.encode("tasks", {"seq": 1, "tasks": tasks})
            break
        except protocol.ProtocolError:
            continue
    assert len(data) > 4000
    (tmp_path / "big.json").write_bytes(data)
    code = """
import gc, framebuf, protocol
from display import pager
from runtime.hw import Screen
gc.collect(); before = gc.mem_free()
p = protocol.decode("tasks", open("big.json", "rb").read())
s = Screen(framebuf.FrameBuffer(bytearray(1024), 128, 64, framebuf.MONO_VLSB), lambda: None)
pager.render(s, p["tasks"], 19, 10, 0)
s.show()
print(len(p["tasks"]), len(s.lines), before - gc.mem_free() > 0)
"""
    assert run_mp(tmp_path, code, "waiter_pager") == ["20 6 True"]


ESP32_STUBS = """
import sys
class Mod:
    pass
calls = []
class Pin:
    IN, OUT, PULL_DOWN = 1, 2, 3
    def __init__(self, n, mode=None, pull=None, value=None):
        self.n = n; self.v = 1 if n == 33 else 0
    def value(self, v=None):
        if v is None: return self.v
        self.v = v
class ADC:
    ATTN_11DB = 3
    def __init__(self, pin): pass
    def atten(self, a): pass
    def read_uv(self): return 1900000  # 3.8 V behind a 1:2 divider
class I2C:
    def __init__(self, *a, **k): pass
    def writeto(self, addr, b): calls.append(("cmd", b[1]))
    def writevto(self, addr, parts): calls.append(("data", sum(len(p) for p in parts)))
class WLAN:
    def __init__(self, i): self.up = False
    def isconnected(self): return self.up
    def active(self, a): pass
    def connect(self, ssid, psk): self.up = ssid == "resto"
    def ifconfig(self): return ("10.0.0.9",)
    def status(self, k): return -61
    def disconnect(self): pass
machine = Mod(); machine.Pin, machine.ADC, machine.I2C = Pin, ADC, I2C
machine.DEEPSLEEP_RESET = 4
machine.reset_cause = lambda: 4
machine.deepsleep = lambda: calls.append(("deepsleep",))
machine.reset = lambda: calls.append(("reset",))
network = Mod(); network.WLAN, network.STA_IF = WLAN, 0
esp32 = Mod(); esp32.WAKEUP_ANY_HIGH, esp32.WAKEUP_ALL_LOW = 1, 0
esp32.wake_on_ext1 = lambda pins, level: calls.append(("ext1", len(pins), level))
sys.modules["machine"], sys.modules["network"], sys.modules["esp32"] = machine, network, esp32
"""


def test_esp32_board_against_stubs(tmp_path):
    """Exercise boards/esp32 (compiled) with stand-ins for machine, network, esp32."""
    code = ESP32_STUBS + """
import asyncio, os
from boards import esp32 as board
cfg = {"kind": "table", "wifi": {"ssid": "resto", "psk": "x"}, "data": "d", "pins": "table_button.json"}
b = board.Board(cfg)
reads = [b.button_pin(n) for n in ("water", "napkins", "bill", "waiter", "cancel")]
b.led_pin("water")(1)
print(asyncio.run(b.link()), b.battery(), b.rssi(), b.woke_by(), b.data_path("x"))
b.deepsleep()
print(calls)
p = board.Board(dict(cfg, kind="pager", pins="waiter_pager.json", wifi={"ssid": "nope", "psk": ""}))
board.WIFI_TIMEOUT_MS = 500
fb, show = p.display()
fb.text("hi", 0, 0, 1)
show()
print(asyncio.run(p.link()), calls[-1], "d" in os.listdir())
"""
    for model in ("table_button", "waiter_pager"):  # the pin maps flash.py copies to the device
        shutil.copy(os.path.join(ROOT, "hardware", "pins", model + ".json"), str(tmp_path))
    out = run_mp(tmp_path, code)
    printed = [l for l in out if not l[:1].isdigit()]  # log lines start with ticks
    assert printed[0] == "True 55 -61 napkins d/x"
    assert printed[1].endswith("('ext1', 5, 1), ('deepsleep',)]")
    assert printed[2] == "False ('data', 1025) True"
    assert any(l.endswith("error wifi 'nope': no link after 500 ms") for l in out)
