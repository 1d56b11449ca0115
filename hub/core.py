"""The hub's core: one worker thread applies every event in order.

Other threads (the MQTT link, the clock) only queue events. Each event runs in one
SQLite transaction and its messages go out only after it commits; an event that
fails is rolled back, logged with its traceback and dropped.
"""
import logging
import queue
import threading
import time

from hub.bus import Outbox
from hub.calls import CallDesk
from hub.devices import Devices
from hub.pagers import Pagers

log = logging.getLogger(__name__)

TICK_S = 0.5
_STOP = object()


class Hub:
    def __init__(self, store, site, clock=time.time):
        self.store = store
        self.site = site
        self.clock = clock
        self.started = clock()
        self.bus = None
        self.outbox = Outbox()
        self.devices = Devices(store, self.outbox, self.started)
        self.pagers = Pagers(store, self.devices, self.outbox)
        self.calls = CallDesk(store, self.pagers, self.outbox)
        self.handlers = {"call": self.calls.on_call, "act": self.calls.on_act}
        self._queue = queue.Queue()
        self._thread = None

    # --- threads ---------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name="hub-core", daemon=True)
        self._thread.start()

    def stop(self):
        """Finish the queued events, then stop."""
        self._queue.put(_STOP)
        self._thread.join()

    def submit(self, step, *args):
        self._queue.put((step, args))

    def _run(self):
        next_tick = time.monotonic() + TICK_S
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if item is not None:
                self.apply(item[0], *item[1])
            if time.monotonic() >= next_tick:
                self.apply(self.tick)
                next_tick = time.monotonic() + TICK_S

    def apply(self, step, *args):
        now = self.clock()
        try:
            with self.store.transaction():
                step(now, *args)
                self.pagers.flush(now)
        except Exception:
            log.exception("%s%r failed; event dropped", step.__name__, args)
            self.outbox.drain()
            self.pagers.discard()
            return
        for item in self.outbox.drain():
            try:
                self.bus.publish(*item)
            except Exception:
                log.exception("could not send %s to %s/%s", item[2], item[0], item[1])

    # --- events ----------------------------------------------------------
    def uplink(self, now, kind, device, message, payload):
        if message == "status":
            change = self.devices.status(kind, device, payload, now)
        else:
            change = self.devices.heard(kind, device, now)
        if change and kind == "pager":
            if change == "online":
                self.calls.pager_online(device, now)
            else:
                self.calls.pager_offline(device, now)
        handler = self.handlers.get(message)
        if handler:
            handler(device, payload, now)
        elif message != "status":
            log.info("%s from %s/%s not handled yet", message, kind, device)

    def restore(self, now):
        """After every (re)connection: rebuild each pager's retained snapshot, place open calls."""
        pagers = self.devices.known("pager")
        for pager in pagers:
            self.pagers.touch(pager)
        self.calls.assign_open(now)
        log.info("state restored: %d live calls, snapshots re-sent to %d pagers", self.calls.live_count(),
                 len(pagers))

    def tick(self, now):
        for kind, device in self.devices.supervise(now):
            if kind == "pager":
                self.calls.pager_offline(device, now)
