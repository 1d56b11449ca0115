# Kitchen display: the station's open tickets from the hub's retained `tickets`
# snapshot, drawn by display.kds (config "layout": "eink" | "lcd", "station",
# "ageing": [warn s, late s] until a snapshot brings its station's own).
# Buttons: next selects the next ticket; bump bumps the selected ticket, but on a
# ticket whose allergy banner is not acknowledged yet the press acknowledges it
# instead (the bump is refused, a long beep says so) and a second press bumps;
# recall brings back the last bumped ticket (the last 20 are kept).
# A 16 KB snapshot decoded whole does not fit the heap: the payload streams to a
# file, each ticket is validated on its own, and only the shown ones are decoded.
# Per ticket the heap keeps five ints in arrays allocated once (byte span, age,
# changed, hash of the id), so a snapshot adds nothing that fragments the heap.
import gc

gc.collect()  # the display modules load into one piece of heap, not into the gaps boot left
import asyncio
import json
from array import array
import os
import time
import protocol
from apps.kitchen_display_tickets import MAX_TICKETS, R, _h, _read, parse
from display import font, kds
from runtime import hw
from runtime.log import log

NEW = [150, 80, 150]
CHANGED = [60, 60, 60, 60, 60]
REFUSED = [500]
RECALL = 20
HIDE_MS = 15000  # a ticket bumped here that the hub still lists shows again after this
# asyncio adds these to its globals on first use, growing a dict: do it before the heap fragments
asyncio.wait_for, asyncio.wait_for_ms, asyncio.open_connection, asyncio.start_server


def _bad(text):
    from runtime.config import ConfigError  # main.py dropped the module after boot

    return ConfigError(text)


class App:
    def __init__(self, dev):
        gc.collect()
        self.dev = dev
        cfg = dev.cfg
        name = cfg.get("layout", "lcd")
        if name not in kds.NAMES:
            raise _bad("config: layout must be one of %s" % ", ".join(kds.NAMES))
        a = cfg.get("ageing", [kds.WARN_S, kds.LATE_S])
        if not isinstance(a, list) or len(a) != 2 or not isinstance(a[0], int) or not 0 < a[0] < a[1]:
            raise _bad("config: ageing must be [warn s, late s] with 0 < warn < late")
        self.layout = name
        self.station = cfg.get("station", dev.id)
        self.ageing = a  # until a snapshot brings its station's thresholds
        L = kds.layout(name, a[0], a[1])
        self.view = kds.View(L, font.default(), dev.board.panel(name, L.width, L.height))
        for b in ("bump", "recall", "next"):  # without next, bump acts on the oldest ticket
            if dev.board.has_button(b):
                dev.button(b)
        self.buzz = hw.Vibra(dev.board.buzzer_pin())
        self.path = dev.board.data_path("tickets.json")
        self.rec = array("I", bytes(4 * R * MAX_TICKETS))  # the snapshot shown
        self.spare = array("I", bytes(4 * R * MAX_TICKETS))  # the next one, while it is checked
        self.n = 0
        self.shown = bytearray(MAX_TICKETS)  # ticket numbers less those bumped here and not gone yet
        self.ns = 0
        self.ages = array("I", bytes(4 * MAX_TICKETS))  # of the shown tickets, for the view
        self.gen = 0  # bumped on every change but time: the view reads tickets again
        self.dirty = False
        self.more = 0  # open tickets the hub left out of the snapshot
        self.pending = None  # a spooled snapshot not taken in yet
        self.chunk = bytearray(64)  # the parser scans the file through this
        self.hidden = {}  # id hash -> ticks_ms when bumped here
        self.acks = {}  # id hash -> hash of the allergy text acknowledged here
        self.bumped = []  # recall stack of ticket ids, newest last
        self.sel = 0
        self.focus = None
        self.seq = None
        self.rx = time.ticks_ms()
        dev.on("tickets", self.on_tickets, spool=dev.board.data_path("tickets.in"))

    def state(self):
        sel = [c[0] for c in self.view.cards if c[3]]  # as drawn last
        return {"layout": self.layout, "seq": self.seq, "station": self.station, "total": self.n,
                "shown": self.ns, "selected": sel[0] if sel else None, "bumped": self.bumped}

    # the shown tickets as a sequence for the view; only the shown slots get decoded
    def __len__(self):
        return self.ns

    def __getitem__(self, i):
        k = R * self.shown[i]
        with open(self.path, "rb") as f:
            return json.loads(_read(f, self.rec[k], self.rec[k + 1], self.view.buf))  # the band buffer is idle now

    def acked(self, t):
        return t.get("allergy_ack") or self.acks.get(_h(t["id"])) == _h(t.get("allergy") or "")

    def _has(self, h):
        """Is a ticket with this id hash in the snapshot?"""
        r = self.rec
        for k in range(self.n):
            if r[R * k + 4] == h:
                return True
        return False

    def _cur(self):
        """Id hash of the selected ticket, or None."""
        return self.rec[R * self.shown[self.sel] + 4] if self.ns else None

    # --- snapshot --------------------------------------------------------------
    def on_tickets(self, path):
        self.pending = path
        self._load()

    def _load(self):
        """Take in the spooled snapshot; short of heap, _refresh tries again."""
        path = self.pending
        try:
            top, n = parse(path, self.spare, self.view.buf, self.chunk)
        except MemoryError as e:
            log("error", "snapshot not read yet: %s" % e)
            return
        except Exception:
            self.pending = None
            raise
        self.pending = None
        try:  # a valid snapshot replaces the one shown; a bad one never does
            os.rename(path, self.path)
        except OSError:
            os.remove(self.path)
            os.rename(path, self.path)
        cur = self._cur()
        old, new_, on = self.rec, self.spare, self.n
        new = fresh = 0
        for k in range(n):  # new tickets, and ones the hub marked changed since the last snapshot
            h = new_[R * k + 4]
            for j in range(on):
                if old[R * j + 4] == h:
                    fresh += 1 if new_[R * k + 3] and not old[R * j + 3] else 0
                    break
            else:
                new += 1
        if self.seq is None:
            new = fresh = 0
        if fresh:
            self.buzz.play(CHANGED)
        if new:
            self.buzz.play(NEW)
        self.rec, self.spare, self.n = new_, old, n
        now = time.ticks_ms()
        for h in list(self.hidden):
            if not self._has(h) or time.ticks_diff(now, self.hidden[h]) > HIDE_MS:
                del self.hidden[h]
        for h in list(self.acks):
            if not self._has(h):
                del self.acks[h]
        self.station = top["station"]
        self.more = top.get("more", 0)
        self.view.L.warn = top.get("warn", self.ageing[0])
        self.view.L.late = top.get("late", self.ageing[1])
        self.seq = top["seq"]
        self.rx = now
        self._show(cur)
        log("tickets", "seq %d: %d tickets, %d new, %d changed" % (self.seq, n, new, fresh))
        self.dirty = True  # drawn by _refresh, out of the MQTT reader and its garbage

    def _show(self, cur):
        """Recompute the shown tickets, keeping the one with id hash cur selected."""
        cur = self.focus or cur
        r = self.rec
        ns = 0
        for k in range(self.n):
            if r[R * k + 4] not in self.hidden:
                self.shown[ns] = k
                ns += 1
        self.ns = ns
        self.sel = min(self.sel, max(0, ns - 1))
        for i in range(ns):
            if r[R * self.shown[i] + 4] == cur:
                self.sel = i
                if cur == self.focus:
                    self.focus = None
        self.gen += 1

    def draw(self, full=False):
        extra = time.ticks_diff(time.ticks_ms(), self.rx) // 1000
        for i in range(self.ns):
            self.ages[i] = self.rec[R * self.shown[i] + 2] + extra
        try:
            self.view.draw(self.station, self, self.ages, self.acked, self.sel, self.dev.connected, self.gen, full,
                           self.more)
        except MemoryError as e:  # the refresh a tenth of a second later tries again
            self.dirty = True
            log("error", "draw: %s" % e)

    # --- buttons -----------------------------------------------------------------
    def bump(self):
        if not self.ns:
            return
        t = self[self.sel]
        tid, allergy = t["id"], t.get("allergy")
        if allergy and not self.acked(t):
            log("bump", "refused %s: allergy not acknowledged; acknowledged now" % tid)
            self.buzz.play(REFUSED)
            if self.dev.send("bump", {"id": tid, "action": "allergy_ack"}):
                self.acks[_h(tid)] = _h(allergy)
            return
        if self.dev.send("bump", {"id": tid, "action": "bump"}):
            log("bump", tid)
            self.hidden[_h(tid)] = time.ticks_ms()
            self.bumped.append(tid)
            if len(self.bumped) > RECALL:
                self.bumped.pop(0)
            self._show(self._cur())

    def recall(self):
        if not self.bumped:
            log("recall", "nothing to recall")
            return
        tid = self.bumped.pop()
        if self.dev.send("bump", {"id": tid, "action": "recall"}):
            log("recall", tid)
            self.hidden.pop(_h(tid), None)
            self.focus = _h(tid)
            self._show(None)

    async def _refresh(self):
        tick = 0
        while True:
            await asyncio.sleep_ms(100)
            tick += 1
            if self.pending:
                gc.collect()
                try:
                    self._load()
                except protocol.ProtocolError as e:
                    log("error", "dropped tickets: %s" % e)
            if self.dirty or tick % 10 == 0:
                self.dirty = False
                self.draw()

    async def run(self):
        asyncio.create_task(self.buzz.run())
        asyncio.create_task(self._refresh())
        self.draw(True)
        while True:
            name = await self.dev.press()
            log("press", name)
            if name == "next" and self.ns:
                self.sel = (self.sel + 1) % self.ns
            elif name == "bump":
                self.bump()
            elif name == "recall":
                self.recall()
            self.gen += 1
            self.draw()
