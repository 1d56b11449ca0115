# The device runtime shared by every app: MQTT link, outbox, heartbeat,
# message routing through protocol, and the io objects an app asks for.
import asyncio
import gc
import sys
import time
import protocol
from runtime import hw
from runtime.log import log
from runtime.mqtt import MQTT, tls_context

FW = "0.1.0"
OFFLINE = b'{"online":false}'


class Device:
    def __init__(self, cfg, board):
        self.cfg = cfg
        self.board = board
        self.kind = cfg["kind"]
        self.id = cfg["id"]
        self.site = cfg["site"]
        self.hb = cfg["hb"]
        self.fw = cfg.get("fw") or FW  # main.py sets it from app/VERSION after an update
        self.sleep_after = cfg.get("sleep", 0) if board.can_sleep else 0
        self.app = None
        self.presses = hw.Presses()
        self._io = []
        self._handlers = {"cmd": self._cmd}
        self._raw = set()
        self._topics = {}
        self._t0 = time.ticks_ms()
        b = cfg["broker"]
        self.mqtt = MQTT("rfm-%s-%s-%s" % (self.site, self.kind, self.id),
                         b["host"], b["port"], b["user"], b["password"],
                         keepalive=cfg.get("keepalive", 60),
                         will=(self.topic("status"), OFFLINE, 1, True),
                         outbox=cfg.get("outbox", 32), retry=cfg.get("retry", 10),
                         backoff=cfg.get("backoff", 60), link=board.link,
                         tls=tls_context(b["ca"]) if b.get("ca") else None)
        self.mqtt.on_message = self._dispatch
        self.mqtt.on_connect = self._online
        for msg in protocol.SUBSCRIBES[self.kind]:
            t = self.topic(msg)
            self._topics[t] = msg
            self.mqtt.subscribe(t, protocol.qos(msg))

    # --- messages ------------------------------------------------------------
    def topic(self, msg):
        return protocol.topic(self.site, self.kind, self.id, msg)

    @property
    def connected(self):
        return self.mqtt.connected

    def send(self, msg, payload, first=False):
        """Validate, encode and queue an up message; False if it broke the contract."""
        try:
            data = protocol.encode(msg, payload)
            t = self.topic(msg)
        except protocol.ProtocolError as e:
            log("error", "not sent %s: %s" % (msg, e))
            return False
        self.mqtt.publish(t, data, protocol.qos(msg), protocol.retain(msg), first)
        return True

    def on(self, msg, handler, spool=None):
        """handler(payload dict) for one of this kind's down messages. With spool
        (a file path) the payload streams to that file and handler(path) validates
        it, raising ProtocolError: for payloads too big for the heap (kds tickets)."""
        if msg not in protocol.SUBSCRIBES[self.kind]:
            raise ValueError("%s devices do not receive %r" % (self.kind, msg))
        self._handlers[msg] = handler
        if spool:
            self._raw.add(msg)
            self.mqtt.spool[self.topic(msg).encode()] = spool

    def _dispatch(self, topic, data):
        msg = self._topics.get(topic)
        if msg is None:
            log("warn", "message on unexpected topic %s dropped" % topic)
            return
        try:
            payload = data if msg in self._raw else protocol.decode(msg, data)
        except protocol.ProtocolError as e:
            log("error", "dropped %s: %s" % (msg, e))
            return
        log("recv", "%s %s" % (msg, data if msg in self._raw else "%dB" % len(data)))
        h = self._handlers.get(msg)
        if h is None:
            return
        try:
            h(payload)
        except protocol.ProtocolError as e:
            log("error", "dropped %s: %s" % (msg, e))
        except Exception as e:
            log("error", "handler %s: %s %s" % (msg, type(e).__name__, e))
            sys.print_exception(e)

    def _cmd(self, p):
        op = p["op"]
        log("cmd", op)
        if op == "reboot":
            self.board.reboot()
        elif op == "identify" and hasattr(self.app, "identify"):
            self.app.identify()
        elif op == "ota":
            from runtime import ota
            asyncio.create_task(ota.update(self, p))

    def status(self):
        gc.collect()
        s = {"online": True, "fw": self.fw, "hb": self.hb, "uptime": self.uptime(),
             "heap": gc.mem_free()}
        bat = self.board.battery()
        rssi = self.board.rssi()
        if bat is not None:
            s["battery"] = bat
        if rssi is not None:
            s["rssi"] = rssi
        return s

    def _online(self):
        # on (re)connect: status goes ahead of anything queued while offline
        self.send("status", self.status(), True)

    async def _heartbeats(self):
        while True:
            await asyncio.sleep(self.hb)
            if self.connected:
                self.send("status", self.status())

    def uptime(self):
        return time.ticks_diff(time.ticks_ms(), self._t0) // 1000

    # --- io --------------------------------------------------------------------
    def _add(self, obj):
        self._io.append(obj)
        return obj

    def button(self, name):
        return self._add(hw.Button(name, self.board.button_pin(name), self.presses))

    def led(self, name):
        return self._add(hw.Led(name, self.board.led_pin(name)))

    def vibra(self):
        return self._add(hw.Vibra(self.board.vibra_pin()))

    def screen(self):
        fb, show = self.board.display()
        return self._add(hw.Screen(fb, show))

    def counter(self, name, block=16):
        from runtime.store import Counter  # only apps that count load it (heap)

        return Counter(self.board.data_path(name), block)

    async def press(self):
        """Name of the next pressed button."""
        return await self.presses.get()

    def state(self):
        """Snapshot for logs and the sim control channel."""
        gc.collect()
        s = {"id": self.id, "connected": self.connected, "leds": {}, "vibrations": 0,
             "last_vibration": [], "screen": [], "outbox": len(self.mqtt.q),
             "heap_free": gc.mem_free()}
        for o in self._io:
            if isinstance(o, hw.Led):
                s["leds"][o.name] = o.mode
            elif isinstance(o, hw.Vibra):
                s["vibrations"] += o.count
                s["last_vibration"] = o.last
            elif isinstance(o, hw.Screen):
                s["screen"] = o.lines
        if hasattr(self.app, "state"):
            s["app"] = self.app.state()
        return s

    # --- lifecycle -------------------------------------------------------------
    async def sleep(self):
        """Say offline, flush the outbox, then deep sleep until a button wakes us."""
        log("sleep", "idle, going to deep sleep")
        self.send("status", {"online": False, "reason": "sleep"})
        for _ in range(50):
            if not self.mqtt.q:
                break
            await asyncio.sleep_ms(100)
        await self.mqtt.disconnect()
        self.board.deepsleep()

    def run(self, app):
        self.app = app
        asyncio.run(self._main())

    async def _main(self):
        for o in self._io:
            if hasattr(o, "run"):
                asyncio.create_task(o.run())
        asyncio.create_task(self.mqtt.run())
        asyncio.create_task(self._heartbeats())
        asyncio.create_task(self.board.serve(self))
        log("boot", "%s %s/%s fw %s board %s" % (self.kind, self.site, self.id, self.fw, self.cfg["board"]))
        if self.cfg.get("ota_trial"):
            from runtime import ota
            asyncio.create_task(ota.confirm(self))
        await self.app.run()
