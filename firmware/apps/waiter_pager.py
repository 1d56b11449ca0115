# Waiter pager: shows the hub's ranked task queue (calls, and the kitchen's pickups).
# Buttons: ack the selected task; done closes it, held for HOLD_MS it cancels it
# instead; next scrolls. New or re-paged tasks vibrate, harder for higher priority.
import asyncio
import time
from display import pager
from runtime.log import log

# (lowest prio, pattern in ms on/off): most urgent first
PATTERNS = ((7, [400, 150, 400, 150, 400]), (6, [250, 150, 250]), (0, [300]))
HOLD_MS = 1000
POLL_MS = 50


class App:
    def __init__(self, dev):
        self.dev = dev
        dev.button("ack")
        self.done_btn = dev.button("done")
        dev.button("next")
        self.vib = dev.vibra()
        self.screen = dev.screen()
        self.tasks = []
        self.pages = {}  # task id -> page count in the last snapshot
        self.sel = 0
        self.seq = None
        self.rx = 0
        dev.on("tasks", self.on_tasks)

    def state(self):
        return {"seq": self.seq, "selected": self.sel, "ids": [t["id"] for t in self.tasks]}

    def identify(self):
        self.vib.play(PATTERNS[0][1])

    def on_tasks(self, p):
        fresh = [t for t in p["tasks"] if t["page"] > self.pages.get(t["id"], -1)]
        cur = self.tasks[self.sel]["id"] if self.tasks else None
        self.tasks = p["tasks"]
        self.pages = {}
        self.sel = 0
        for i, t in enumerate(self.tasks):
            self.pages[t["id"]] = t["page"]
            if t["id"] == cur:
                self.sel = i
        self.seq = p["seq"]
        self.rx = int(time.time())
        log("tasks", "seq %d: %d tasks, %d new" % (self.seq, len(self.tasks), len(fresh)))
        if fresh:
            top = max(t["prio"] for t in fresh)
            for lo, pat in PATTERNS:
                if top >= lo:
                    self.vib.play(pat)
                    break
        self.draw()

    def draw(self):
        pager.render(self.screen, self.tasks, self.sel, int(time.time()), self.rx,
                     self.dev.connected, self.dev.board.battery())
        self.screen.show()

    async def _refresh(self):
        while True:
            self.draw()
            await asyncio.sleep(1)

    async def _held(self):
        for _ in range(HOLD_MS // POLL_MS):
            await asyncio.sleep_ms(POLL_MS)
            if not self.done_btn.read():
                return False
        return True

    async def run(self):
        asyncio.create_task(self._refresh())
        while True:
            name = await self.dev.press()
            log("press", name)
            if not self.tasks:
                continue
            if name == "next":
                self.sel = (self.sel + 1) % len(self.tasks)
            else:
                t = self.tasks[self.sel]["id"]
                if name == "done" and await self._held():
                    name = "cancel"
                log("act", "%s %s" % (name, t))
                self.dev.send("act", {"id": t, "action": name})
            self.draw()
