"""Kitchen display firmware (the compiled kitchen_display bundle under MicroPython with a
112 kB heap) against a real Mosquitto, with paho-mqtt playing the hub. The screen is
read back from the sim board's panel file and compared with the same scene rendered by
display/ on CPython, byte for byte."""
import pytest

import protocol
from display import canvas, font, kds
from tests.bench.proxy import Proxy
from tests.brokers import Recorder, wait_until
from tests.simdev import SimDevice

SITE = "demo"
ALLERGY = "花生 peanuts"


def T(dev, msg):
    return protocol.topic(SITE, "kds", dev, msg)


def ticket(n, station="wok", allergy=None, age=0, **extra):
    t = {"id": "O%d-%s" % (n, station), "order": "O%d" % n, "ch": "pos", "num": str(1000 + n),
         "items": [{"name": "宫保鸡丁", "qty": 2, "mods": ["不要辣"]}, {"name": "扬州炒饭", "qty": 1}],
         "note": "打包", "also": ["cold"], "age": age}
    if allergy:
        t["allergy"] = allergy
    t.update(extra)
    return t


def snapshot(seq, tickets, station="wok", **extra):
    return protocol.encode("tickets", dict(seq=seq, station=station, tickets=tickets, **extra))


def expected(layout, tickets, sel=0, online=True, station="wok", more=0):
    """The frame display/ draws on CPython for this scene (ages as sent: under a minute)."""
    L = kds.layout(layout)
    panel = canvas.Panel(L.width, L.height, L.fmt)
    kds.View(L, font.default(), panel).draw(station, tickets, [t["age"] for t in tickets],
                                            lambda t: t.get("allergy_ack"), sel, online, full=True, more=more)
    return bytes(panel.fb.buf)


def screen(dev):
    rep = dev.request({"get": "screen"})
    assert "path" in rep, "%s answered %r to get screen\n%s" % (dev.id, rep, dev.log_tail)
    with open(rep["path"], "rb") as f:
        return f.read()


def wait_screen(dev, want, what, timeout=15):
    wait_until(lambda: screen(dev) == want, timeout, "%s screen %s\n%s" % (dev.id, what, dev.log_tail))


def test_lcd_shows_snapshot_buzzes_refuses_bump_before_ack_and_recalls(broker, tmp_path, devices):
    hub = Recorder(broker, [T("wok", "bump")])
    first = [ticket(1, allergy=ALLERGY), ticket(2)]
    hub.publish(T("wok", "tickets"), snapshot(1, first), retain=True)  # waiting before the display boots
    dev = SimDevice("kds", "wok", broker, tmp_path, layout="lcd")
    devices.append(dev.start())
    s = dev.wait_for(lambda s: s["connected"] and s["app"]["selected"] == "O1-wok", what="retained snapshot shown")
    assert s["app"]["total"] == 2 and s["app"]["seq"] == 1
    wait_screen(dev, expected("lcd", first), "shows the snapshot, Chinese dish names included")
    assert dev.request({"get": "buzzer"})["beeps"] == 0  # what was already there at boot is not new

    second = first + [ticket(3)]
    hub.publish(T("wok", "tickets"), snapshot(2, second), retain=True)
    dev.wait_for(lambda s: s["app"]["seq"] == 2)
    wait_until(lambda: dev.request({"get": "buzzer"})["beeps"] >= 2, 5, "buzzer on a new ticket")

    dev.press("bump")  # O1 has an allergy nobody acknowledged: the press acknowledges it
    _, ack, _ = hub.wait_msg(lambda t, p, r: True, what="allergy_ack")
    assert protocol.validate("bump", ack) == {"id": "O1-wok", "action": "allergy_ack"}
    dev.wait_log("bump refused O1-wok: allergy not acknowledged")
    s = dev.wait_for(lambda s: s["app"]["total"] == 3)
    assert s["app"]["shown"] == 3 and s["app"]["selected"] == "O1-wok"
    dev.press("bump")
    hub.wait_msg(lambda t, p, r: p == {"id": "O1-wok", "action": "bump"}, what="bump after the ack")
    s = dev.wait_for(lambda s: s["app"]["shown"] == 2 and s["app"]["selected"] == "O2-wok",
                     what="bumped ticket leaves the screen")
    assert s["app"]["bumped"] == ["O1-wok"] and s["app"]["selected"] == "O2-wok"
    assert [p["action"] for _t, p, _r, _d in ((m[0], protocol.decode("bump", m[1]), m[2], m[3])
                                              for m in hub.matching("/bump"))] == ["allergy_ack", "bump"]
    dev.press("recall")
    hub.wait_msg(lambda t, p, r: p == {"id": "O1-wok", "action": "recall"}, what="recall")
    s = dev.wait_for(lambda s: s["app"]["shown"] == 3 and s["app"]["selected"] == "O1-wok", what="recalled")
    assert s["app"]["bumped"] == []
    dev.press("next")
    dev.wait_for(lambda s: s["app"]["selected"] == "O2-wok", what="next selects the next ticket")
    # a snapshot that breaks the contract is dropped with the field named; the screen stays
    hub.publish(T("wok", "tickets"), b'{"seq":3,"station":"wok","tickets":[{"id":"x"}]}')
    dev.wait_log("dropped tickets: tickets[0].")
    assert dev.state()["app"]["seq"] == 2
    hub.close()


def test_eink_resyncs_after_reconnect_and_holds_24_tickets(broker, tmp_path, devices):
    proxy = Proxy(broker).start()
    hub = Recorder(broker, [])
    try:
        hub.publish(T("grill", "tickets"), snapshot(1, [ticket(1, "grill")], "grill"), retain=True)
        dev = SimDevice("kds", "grill", proxy.port, tmp_path, layout="eink", keepalive=4)
        devices.append(dev.start())
        dev.wait_for(lambda s: s["connected"] and s["app"]["seq"] == 1, what="first snapshot")
        proxy.blackhole()  # Wi-Fi gone: the display finds out from its keepalive
        dev.wait_for(lambda s: not s["connected"], 20, "link loss noticed")
        offline = expected("eink", [ticket(1, "grill")], online=False, station="grill")
        wait_until(lambda: screen(dev)[:50 * 20] == offline[:50 * 20], 5, "OFFLINE in the status bar")
        many = [ticket(n, "grill", allergy=ALLERGY if n % 3 == 0 else None, changed=n % 4 == 1)
                for n in range(2, 26)]
        hub.publish(T("grill", "tickets"), snapshot(2, many, "grill", more=7), retain=True)  # while it is away
        assert dev.state()["app"]["seq"] == 1
        proxy.restore()
        dev.wait_for(lambda s: s["connected"] and s["app"]["seq"] == 2, 30, "resynced from the retained snapshot")
        wait_screen(dev, expected("eink", many, station="grill", more=7), "24 tickets after the resync")
        heaps = [dev.state()["heap_free"] for _ in range(10)]
        print("kitchen_display eink, 24-ticket snapshot: min free heap %d bytes" % min(heaps))
        assert min(heaps) > 1024
        s = dev.state()["app"]
        assert (s["total"], s["shown"], s["selected"], s["seq"]) == (24, 24, "O2-grill", 2)
    finally:
        hub.close()
        proxy.close()


# --- the esp32 board's kitchen panels, against stand-ins for machine -----------------
PANEL_SCRIPT = '''
import json, machine
from boards.esp32 import Board
dc = json.load(open("pins.json"))[%r]["dc"]
b = Board({"kind": "kds", "wifi": {"ssid": "s", "psk": "p"}, "data": "data"})
out = {"buttons": [b.has_button(n) for n in ("bump", "recall", "next")]}
beep = b.buzzer_pin()
beep(True)
out["beep"] = [machine.PWM.made[-1].freq, machine.PWM.made[-1].duty]
beep(False)
out["beep"].append(machine.PWM.made[-1].duty)
p = b.panel(%r, %d, %d)
machine.SPI.log = []
machine.SPI.dc = dc
p.push(136, 20, 136, 2, bytes(%d))
p.refresh([[136, 20, 136, 2]])
out["spi"] = [["cmd" if level == 0 else "data", list(d)] for level, d in machine.SPI.log]
try:
    b.panel("lcd" if %r == "eink" else "eink", 320, 240)
except ValueError as e:
    out["wrong"] = str(e)
print(json.dumps(out))
'''

PWM_SPI = '''
class PWM:
    made = []
    def __init__(self, pin, freq=0, duty_u16=0):
        self.freq = freq
        self.duty = duty_u16
        PWM.made.append(self)
    def duty_u16(self, d):
        self.duty = d
class SPI:
    log = []
    dc = None
    def __init__(self, id, baudrate, sck, mosi):
        calls.append(["spi", id, baudrate, sck.n, mosi.n])
    def write(self, data):
        SPI.log.append([Pin.levels.get(SPI.dc), bytes(data)])
'''


@pytest.mark.parametrize("model,layout,size", [("kitchen_eink", "eink", (400, 300)),
                                               ("kitchen_lcd", "lcd", (320, 240))])
def test_esp32_kitchen_panel_commands_and_buzzer(tmp_path, model, layout, size):
    import json
    import os
    import shutil
    import subprocess
    from tests.simdev import HEAP, ROOT, bundle, micropython
    from tests.test_fleet_esp32_pins import STUBS
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in STUBS.items():
        (stubs / name).write_text(text + (PWM_SPI if name == "machine.py" else ""))
    shutil.copy(os.path.join(ROOT, "hardware", "pins", model + ".json"), tmp_path / "pins.json")
    part = "epd" if layout == "eink" else "lcd"
    band = 136 * 2 // 8 if layout == "eink" else 136 * 2 * 2
    (tmp_path / "t.py").write_text(PANEL_SCRIPT % (part, layout, size[0], size[1], band, layout))
    env = dict(os.environ, MICROPYPATH="%s:%s:.frozen" % (stubs, bundle("kitchen_display")))
    r = subprocess.run([micropython(), "-X", "heapsize=" + HEAP, "t.py"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["buttons"] == [True, True, False]  # the pin maps have no next button yet
    assert got["beep"] == [2800, 32768, 0]  # the piezo is driven by PWM, not DC
    if layout == "eink":  # RAM window in bytes of x, rows of y, cursor, pixels, full update
        assert got["spi"] == [["cmd", [0x44]], ["data", [17, 33]], ["cmd", [0x45]], ["data", [20, 0, 21, 0]],
                              ["cmd", [0x4E]], ["data", [17]], ["cmd", [0x4F]], ["data", [20, 0]],
                              ["cmd", [0x24]], ["data", [0] * band], ["cmd", [0x22]], ["data", [0xF7]],
                              ["cmd", [0x20]]]
    else:  # column and page address, then the RGB565 pixels
        assert got["spi"] == [["cmd", [0x2A]], ["data", [0, 136, 1, 15]], ["cmd", [0x2B]], ["data", [0, 20, 0, 21]],
                              ["cmd", [0x2C]], ["data", [0] * band]]
    assert "needs a" in got["wrong"]
