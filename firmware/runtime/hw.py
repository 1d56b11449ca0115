# Board-independent io: the board supplies raw pin functions, these add logic.
import asyncio
import time

POLL_MS = 10
DEBOUNCE_MS = 30
BLINK_MS = {"slow": 500, "fast": 125}
LED_MODES = ("off", "on", "slow", "fast")


class Presses:
    """Bounded queue of button names, fed by all Buttons of a device."""

    def __init__(self, size=8):
        self.size = size
        self.q = []
        self.ev = asyncio.Event()

    def put(self, name):
        if len(self.q) < self.size:
            self.q.append(name)
        self.ev.set()

    async def get(self):
        while not self.q:
            self.ev.clear()
            await self.ev.wait()
        return self.q.pop(0)


class Button:
    """Debounced push button; read() is True while pressed."""

    def __init__(self, name, read, sink):
        self.name = name
        self.read = read
        self.sink = sink

    async def run(self):
        stable = False
        since = 0
        while True:
            raw = bool(self.read())
            if raw == stable:
                since = 0
            else:
                since += POLL_MS
                if since >= DEBOUNCE_MS:
                    stable = raw
                    since = 0
                    if raw:
                        self.sink.put(self.name)
            await asyncio.sleep_ms(POLL_MS)


class Led:
    """LED with a logical mode: off, on, slow or fast blink."""

    def __init__(self, name, out):
        self.name = name
        self.out = out
        self.mode = "off"
        self._t0 = 0
        self._until = None
        self._then = "off"

    def set(self, mode, ms=0, then="off"):
        """Set the mode; with ms > 0 change to `then` after ms."""
        if mode not in LED_MODES or then not in LED_MODES:
            raise ValueError("led mode %r" % mode)
        self.mode = mode
        self._then = then
        self._t0 = time.ticks_ms()
        self._until = time.ticks_add(self._t0, ms) if ms > 0 else None

    async def run(self):
        while True:
            now = time.ticks_ms()
            if self._until is not None and time.ticks_diff(now, self._until) >= 0:
                self.set(self._then)
            p = BLINK_MS.get(self.mode)
            self.out(time.ticks_diff(now, self._t0) // p % 2 == 0 if p else self.mode == "on")
            await asyncio.sleep_ms(50)


class Vibra:
    """Vibration motor; a pattern is a list of ms, on/off alternating."""

    def __init__(self, out):
        self.out = out
        self.count = 0
        self.last = []
        self._ev = asyncio.Event()

    def play(self, pattern):
        self.last = [min(int(ms), 2000) for ms in pattern[:16]]
        self.count += 1
        self._ev.set()

    async def run(self):
        while True:
            await self._ev.wait()
            self._ev.clear()
            for i, ms in enumerate(self.last):
                if self._ev.is_set():
                    break
                self.out(i % 2 == 0)
                await asyncio.sleep_ms(ms)
            self.out(False)


class Screen:
    """A framebuf wrapper that remembers the text of the last shown frame."""

    def __init__(self, fb, show, width=128, height=64):
        self.fb = fb
        self.width = width
        self.height = height
        self._show = show
        self._cur = []
        self.lines = []

    def fill(self, c):
        self._cur = []
        self.fb.fill(c)

    def text(self, s, x, y, c=1):
        self._cur.append(s)
        self.fb.text(s, x, y, c)

    def fill_rect(self, x, y, w, h, c):
        self.fb.fill_rect(x, y, w, h, c)

    def hline(self, x, y, w, c):
        self.fb.hline(x, y, w, c)

    def rect(self, x, y, w, h, c):
        self.fb.rect(x, y, w, h, c)

    def show(self):
        self.lines = self._cur
        self._show()
