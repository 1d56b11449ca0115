# Simulated board for the MicroPython unix port. A test drives and observes it
# over newline-delimited JSON on 127.0.0.1:<ctl_port>.
import asyncio
import binascii
import framebuf
import json
import os
import random
import sys
from runtime.log import log

PRESS_MS = 80


def _nop(*a):
    pass


class _Pin:
    """A button pin a test presses: each press is `ms` (PRESS_MS) down, PRESS_MS up."""

    def __init__(self):
        self.down = False
        self.pending = 0
        self.busy = False
        self.ms = PRESS_MS

    def __call__(self):
        return self.down

    async def drive(self):
        for _ in range(64):
            if not self.pending:
                break
            self.pending -= 1
            self.down = True
            await asyncio.sleep_ms(self.ms)
            self.down = False
            await asyncio.sleep_ms(PRESS_MS)
        self.busy = False


class _Panel:
    """A kitchen panel whose memory is a file (outside the MicroPython heap), raw
    rows in the layout's format (RGB565 big-endian or MONO_HLSB, 1 = white), so
    tests and previews read what the device drew."""

    def __init__(self, path, name, width, height):
        self.path = path
        self.name = name
        self.width = width
        self.height = height
        self.rgb = name == "lcd"
        self.row = width * 2 if self.rgb else (width + 7) // 8
        self.pushes = 0
        self.refreshes = 0
        self.last = []
        with open(path, "wb") as f:
            blank = bytes(self.row)
            for _ in range(height):
                f.write(blank)
        self.f = open(path, "r+b")

    def push(self, x, y, w, h, buf):
        rb = w * 2 if self.rgb else w // 8
        off = x * 2 if self.rgb else x // 8
        for r in range(h):
            self.f.seek((y + r) * self.row + off)
            self.f.write(buf[r * rb:(r + 1) * rb])
        self.pushes += 1

    def refresh(self, rects):
        self.f.flush()
        self.refreshes += 1
        self.last = [list(r) for r in rects]


class _Buzzer:
    """Counts beeps (off -> on edges)."""

    def __init__(self):
        self.on = False
        self.beeps = 0

    def __call__(self, on):
        if on and not self.on:
            self.beeps += 1
        self.on = bool(on)


class Board:
    can_sleep = False

    def __init__(self, cfg):
        self.port = cfg["ctl_port"]
        self.data = cfg["data"]
        self.bat = 100
        self._pins = {}
        self._fb = None
        self._panel = None
        self._buzzer = _Buzzer()
        try:
            os.mkdir(self.data)
        except OSError:
            pass

    # --- hardware a device asks for ----------------------------------------
    def button_pin(self, name):
        p = self._pins[name] = _Pin()
        return p

    def led_pin(self, name):
        return _nop

    def vibra_pin(self):
        return _nop

    def has_button(self, name):
        return True

    def buzzer_pin(self):
        return self._buzzer

    def panel(self, name, width, height):
        self._panel = _Panel(self.data_path("screen.raw"), name, width, height)
        return self._panel

    def display(self):
        self._fb = framebuf.FrameBuffer(bytearray(128 * 64 // 8), 128, 64, framebuf.MONO_VLSB)
        return self._fb, _nop

    async def link(self):
        return True

    def battery(self):
        return self.bat

    def rssi(self):
        return -50 - random.getrandbits(4)

    def data_path(self, name):
        return self.data + "/" + name

    def woke_by(self):
        return None

    def deepsleep(self):
        raise OSError("sim board cannot deep sleep")

    def reboot(self):
        log("boot", "reboot requested: exiting")
        sys.exit(3)

    # --- control channel ---------------------------------------------------
    async def serve(self, dev):
        self.dev = dev
        try:
            self._srv = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        except OSError as e:
            log("error", "control port %d: %s" % (self.port, e))
            sys.exit(2)
        log("sim", "control on 127.0.0.1:%d" % self.port)

    async def _client(self, r, w):
        try:
            while True:
                line = await r.readline()
                if not line:
                    break
                try:
                    rep = self._handle(json.loads(line))
                except Exception as e:
                    rep = {"error": "%s %s" % (type(e).__name__, e)}
                data = b'{"error":"MemoryError"}\n'
                for _ in range(20):  # a device short of heap answers a little later
                    try:
                        data = json.dumps(rep).encode() + b"\n"
                        break
                    except MemoryError:
                        await asyncio.sleep_ms(50)
                w.write(data)
                await w.drain()
        except OSError:
            pass
        w.close()
        await w.wait_closed()

    def _handle(self, req):
        if not isinstance(req, dict):
            return {"error": "request must be a JSON object"}
        if "press" in req:
            p = self._pins.get(req["press"])
            if p is None:
                return {"error": "no button %r" % req["press"]}
            p.pending = min(p.pending + 1, 8)
            p.ms = max(PRESS_MS, min(5000, int(req.get("ms", PRESS_MS))))  # {"ms": 1500}: held
            if not p.busy:
                p.busy = True
                asyncio.create_task(p.drive())
            return {"ok": True}
        if "set" in req and "battery" in req["set"]:
            self.bat = max(0, min(100, int(req["set"]["battery"])))
            return {"ok": True}
        get = req.get("get")
        if get == "state":
            return self.dev.state()
        if get == "screen_pbm":
            if self._fb is None:
                return {"error": "this device has no screen"}
            return {"pbm": binascii.b2a_base64(self._pbm()).decode().strip()}
        if get == "screen":
            p = self._panel
            if p is None:
                return {"error": "this device has no kitchen panel"}
            return {"path": p.path, "layout": p.name, "width": p.width, "height": p.height,
                    "pushes": p.pushes, "refreshes": p.refreshes, "last": p.last}
        if get == "buzzer":
            return {"beeps": self._buzzer.beeps, "on": self._buzzer.on}
        return {"error": "unknown request"}

    def _pbm(self):
        # MONO_HLSB rows with bit 7 leftmost are exactly PBM P4 raster rows.
        buf = bytearray(128 * 64 // 8)
        framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_HLSB).blit(self._fb, 0, 0)
        return b"P4\n128 64\n" + buf
