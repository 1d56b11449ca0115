# Table button: one button and LED per call type, plus cancel.
import asyncio
import time
from runtime.log import log

TYPES = ("water", "napkins", "bill", "waiter")
LED = {"sent": "fast", "seen": "slow", "on_the_way": "on", "done": "on", "cancelled": "off"}
DONE_MS = 4000
FLASH_MS = 600  # a re-press flashes the LED at once, before the hub answers
REMINDERS = 3  # reminder ids kept per call, to recognise the hub's feedback
RESEND_S = 5  # a raise the hub has not answered is sent again (the hub dedupes by id)
REMIND_MS = 10000  # a mashed button makes one reminder at most this often, not one per press


class App:
    def __init__(self, dev):
        self.dev = dev
        for name in TYPES + ("cancel",):
            dev.button(name)
        self.leds = {}
        for t in TYPES:
            self.leds[t] = dev.led(t)
        self.calls = {}  # type -> [call id, state, reminder ids...]; open calls only
        self.asked = {}  # type -> ticks_ms of its last raise or reminder
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
        led = self.leds[name]
        now = time.ticks_ms()
        if c is None:
            c = self.calls[name] = [self.new_id(), "sent"]
            led.set(LED["sent"])
            cid = c[0]
        elif c[1] == "sent" or time.ticks_diff(now, self.asked[name]) < REMIND_MS:
            # not answered yet (_resend keeps trying), or just asked: only the LED answers
            if c[1] != "sent":
                led.set("fast", FLASH_MS, led.mode)
            return
        else:
            # asked again: a reminder under a new id; the hub raises the call's urgency
            cid = self.new_id()
            c.append(cid)
            if len(c) > 2 + REMINDERS:
                del c[2]
            led.set("fast", FLASH_MS, led.mode)
        self.asked[name] = now
        self.dev.send("call", {"id": cid, "action": "raise", "type": name})

    def new_id(self):
        return "%s-%d" % (self.dev.id, self.ids.next())

    def cancel(self):
        if not self.calls:
            log("press", "cancel: no open calls")
        for t in list(self.calls):
            self.dev.send("call", {"id": self.calls.pop(t)[0], "action": "cancel"})
            self.leds[t].set("off")

    def feedback(self, p):
        for t in self.calls:
            c = self.calls[t]
            if c[0] == p["id"] or p["id"] in c[2:]:
                if c[1] == p["state"]:
                    return  # told again (a reminder's answer): leave the LED, and any flash, alone
                c[1] = p["state"]
                log("call", "%s %s %s" % (c[0], t, c[1]))
                if c[1] in ("done", "cancelled"):
                    del self.calls[t]
                self.leds[t].set(LED[p["state"]], DONE_MS if p["state"] == "done" else 0)
                return
        log("warn", "feedback for unknown call %s ignored" % p["id"])
