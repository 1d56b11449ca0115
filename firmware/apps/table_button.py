# Table button: one button and LED per call type, plus cancel.
import asyncio
from runtime.log import log

TYPES = ("water", "napkins", "bill", "waiter")
LED = {"sent": "fast", "seen": "slow", "on_the_way": "on", "done": "on", "cancelled": "off"}
DONE_MS = 4000
RESEND_S = 5  # a raise the hub has not answered is sent again (the hub dedupes by id)


class App:
    def __init__(self, dev):
        self.dev = dev
        for name in TYPES + ("cancel",):
            dev.button(name)
        self.leds = {}
        for t in TYPES:
            self.leds[t] = dev.led(t)
        self.calls = {}  # type -> [call id, state]; open calls only
        self.ids = dev.counter("call_id")
        dev.on("feedback", self.feedback)

    def state(self):
        return {"calls": self.calls}

    def identify(self):
        for led in self.leds.values():
            led.set("fast", 3000, led.mode)

    async def _resend(self):
        # a broker PUBACK only means the broker has it; the hub's feedback means the hub does
        while True:
            await asyncio.sleep(RESEND_S)
            if self.dev.connected:
                for t in self.calls:
                    c = self.calls[t]
                    if c[1] == "sent":
                        log("call", "%s unanswered, sending again" % c[0])
                        self.dev.send("call", {"id": c[0], "action": "raise", "type": t})

    async def run(self):
        asyncio.create_task(self._resend())
        first = self.dev.board.woke_by()
        if first:
            self.press(first)
        while True:
            if self.dev.sleep_after and not self.calls:
                try:
                    name = await asyncio.wait_for(self.dev.press(), self.dev.sleep_after)
                except asyncio.TimeoutError:
                    await self.dev.sleep()
                    continue
            else:
                name = await self.dev.press()
            self.press(name)

    def press(self, name):
        log("press", name)
        if name == "cancel":
            self.cancel()
            return
        c = self.calls.get(name)
        if c is None:
            c = self.calls[name] = ["%s-%d" % (self.dev.id, self.ids.next()), "sent"]
            self.leds[name].set(LED["sent"])
        # a repeated press re-sends the open call (the hub ignores duplicates)
        self.dev.send("call", {"id": c[0], "action": "raise", "type": name})

    def cancel(self):
        if not self.calls:
            log("press", "cancel: no open calls")
        for t in list(self.calls):
            self.dev.send("call", {"id": self.calls.pop(t)[0], "action": "cancel"})
            self.leds[t].set("off")

    def feedback(self, p):
        for t in self.calls:
            c = self.calls[t]
            if c[0] == p["id"]:
                c[1] = p["state"]
                log("call", "%s %s %s" % (c[0], t, c[1]))
                if c[1] in ("done", "cancelled"):
                    del self.calls[t]
                self.leds[t].set(LED[p["state"]], DONE_MS if p["state"] == "done" else 0)
                return
        log("warn", "feedback for unknown call %s ignored" % p["id"])
