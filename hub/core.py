"""The hub's core: one worker thread applies every event in order.

Other threads (the MQTT link, the clock) only queue events. Each event runs in one
SQLite transaction and its messages go out only after it commits; an event that
fails is rolled back, logged with its traceback and dropped.
"""
import logging
import queue
import threading
import time

from hub.bouncer import Bouncer
from hub.bus import Outbox
from hub.calls import CallDesk
from hub.devices import Devices
from hub.fleet import Fleet
from hub.floor import Floor
from hub.orders import Orders
from hub.pagers import Pagers
from hub.stations import Stations, load_menu

log = logging.getLogger(__name__)

TICK_S = 0.5
_STOP = object()


class Hub:
    def __init__(self, store, site, clock=time.time, menu=None, webhooks=None, channel_secrets=None):
        """menu: hub.stations.Menu (default the demo menu); webhooks: hub.webhooks.StatusWebhook
        or None; channel_secrets: {channel: signing secret} for order intake."""
        self.store = store
        self.site = site
        self.clock = clock
        self.started = clock()
        self.bus = None
        self.outbox = Outbox()
        self.devices = Devices(store, self.outbox, self.started)
        self.floor = Floor(store, clock)
        self.pagers = Pagers(store, self.devices, self.outbox, self.floor)
        self.calls = CallDesk(store, self.pagers, self.outbox, self.floor)
        self.fleet = Fleet(store, self.devices, self.pagers, self.outbox)
        self.stations = Stations(store, self.devices, self.outbox, site, menu or load_menu())
        self.orders = Orders(store, self.stations, self.pagers, self.outbox, webhooks)
        self.channel_secrets = dict(channel_secrets or {})
        self.bouncer = Bouncer()  # used by the MQTT link (hub.bus); its flags show in /api/devices
        self.handlers = {"call": self.calls.on_call, "act": self.on_act, "bump": self.stations.on_bump}
        self._queue = queue.Queue()
        self._thread = None
        self.watchers = []  # fn(now, step, sent) after each committed event; sent: its messages

    # --- threads ---------------------------------------------------------
    def start(self):
        self._thread = threading.Thread(target=self._run, name="hub-core", daemon=True)
        self._thread.start()

    def stop(self):
        """Finish the queued events, then stop."""
        self._queue.put(_STOP)
        self._thread.join()

    def submit(self, step, *args, after=None):
        """Queue an event; after(ok), if given, runs once it has committed (ok) or been dropped."""
        self._queue.put((step, args, after))

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
                ok = self.apply(item[0], *item[1])
                if item[2] is not None:
                    try:
                        item[2](ok)
                    except Exception:
                        log.exception("after %s failed", item[0].__name__)
            if time.monotonic() >= next_tick:
                self.apply(self.tick)
                next_tick = time.monotonic() + TICK_S

    def apply(self, step, *args):
        now = self.clock()
        try:
            with self.store.transaction():
                step(now, *args)
                self.stations.flush(now)
                self.pagers.flush(now)
        except Exception:
            log.exception("%s%r failed; event dropped", step.__name__, args)
            self.outbox.drain()
            self.stations.discard()
            self.pagers.discard()
            return False
        sent = self.outbox.drain()
        for item in sent:
            try:
                self.bus.publish(*item)
            except Exception:
                log.exception("could not send %s to %s/%s", item[2], item[0], item[1])
        for watch in self.watchers:
            try:
                watch(now, step, sent)
            except Exception:
                log.exception("watcher %s failed", getattr(watch, "__qualname__", watch))
        return True

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
        if kind == "table" and (change == "online" or message == "status" and payload["online"]):
            self.calls.table_online(device, now, change == "online")
        if change:
            self.orders.presence(kind, device, change, now)
        handler = self.handlers.get(message)
        if handler:
            handler(device, payload, now)
        elif message != "status":
            log.info("%s from %s/%s not handled yet", message, kind, device)

    def on_act(self, pager, msg, now):
        """A pager's act: device alert tasks belong to the fleet, pickups to the orders, the rest
        to the call desk."""
        if not self.fleet.on_act(pager, msg, now) and not self.orders.on_act(pager, msg, now):
            self.calls.on_act(pager, msg, now)

    def restore(self, now):
        """After every (re)connection: rebuild each pager's retained snapshot, place open calls."""
        pagers = self.devices.known("pager")
        for pager in pagers:
            self.pagers.touch(pager)
        self.calls.resume(now)
        self.orders.restore(now)
        log.info("state restored: %d live calls, snapshots re-sent to %d pagers", self.calls.live_count(),
                 len(pagers))

    def tick(self, now):
        self.bouncer.expire()
        for kind, device in self.devices.supervise(now):
            if kind == "pager":
                self.calls.pager_offline(device, now)
        self.calls.tick(now)
        self.fleet.tick(now)
        self.orders.tick(now)
