# Waiter pager: shows the hub's ranked task queue; ack, done, next buttons.
import asyncio
import time
from display import pager
from runtime.log import log

BUZZ = [300]
URGENT = [400, 150, 400, 150, 400]
URGENT_PRIO = 7


class App:
    def __init__(self, dev):
        self.dev = dev
        for name in ("ack", "done", "next"):
            dev.button(name)
        self.vib = dev.vibra()
        self.screen = dev.screen()
        self.tasks = []
        self.pages = {}  # task id -> page count in the last snapshot
        self.sel = 0
        self.seq = None
        self.rx = 0
        dev.on("tasks", self.on_tasks)

    def state(self):
        return {"seq": self.seq, "selected": self.sel}

    def identify(self):
        self.vib.play(URGENT)

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
            self.vib.play(URGENT if max(t["prio"] for t in fresh) >= URGENT_PRIO else BUZZ)
        self.draw()

    def draw(self):
        pager.render(self.screen, self.tasks, self.sel, int(time.time()), self.rx,
                     self.dev.connected)
        self.screen.show()

    async def _refresh(self):
        while True:
            self.draw()
            await asyncio.sleep(1)

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
                self.dev.send("act", {"id": self.tasks[self.sel]["id"], "action": name})
            self.draw()
