"""The live feed behind every web page: one Server-Sent Events stream per page.

The core calls Feed.committed() after each committed event. It keeps the last `tasks` and
`tickets` payload sent to each pager and kitchen display (what the device shows) and wakes
the streams. A page opens GET /live?v=<page>&...; the page's domain module (registered in
Feed.pages) says which views the stream carries. Each round the stream renders its views and
sends those whose JSON changed as `event: <view>`, `data: <whole view>`: never a diff, so a
page never needs a reload. A view holds timestamps, not ages: the browser's timers tick.

A stream for a phone pager or a web kitchen display keeps that device online while open:
a status heartbeat goes through the core like a device's own, and the hub's supervision
takes it offline when the page goes away.
"""
import json
import logging
import threading
import time

from flask import Blueprint, Response, request

from hub.floor_api import in_core

log = logging.getLogger(__name__)

STREAM_S = 600  # then the browser reconnects by itself
PING_S = 15
REFRESH_S = 15  # views are rendered again at least this often (shift changes, clocks)
SETTLE_S = 0.15  # a burst of events becomes one round
WEB_HB_S = 30  # heartbeat period a web device announces
BEAT_S = 20  # how often a stream repeats its device's heartbeat
WEB_FW = "web"

class Stream:
    """What one open page receives: views {event name: fn() -> JSON-able}, the web device
    (kind, id) it keeps online or None, and alive() -> False once its access is gone."""

    def __init__(self, views, device=None, alive=None):
        self.views = views
        self.device = device
        self.alive = alive or (lambda: True)


class Feed:
    def __init__(self):
        self.revision = 0
        self.last = {}  # (kind, device) -> {"sent_at", "payload"} of its latest tasks/tickets
        self.pages = {}  # page name -> fn(args) returning a Stream; may raise an HTTPException
        self._cond = threading.Condition()

    def committed(self, now, step, sent):
        """Core watcher: runs on the core thread after each committed event."""
        for kind, device, message, payload in sent:
            if message in ("tasks", "tickets"):
                self.last[(kind, device)] = {"sent_at": now, "payload": payload}
        if sent or step.__name__ != "tick":
            with self._cond:
                self.revision += 1
                self._cond.notify_all()

    def wait(self, seen, timeout):
        """The revision once it differs from `seen`, or after timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self.revision != seen, timeout)
            return self.revision

    def shown(self, kind, device):
        return self.last.get((kind, device))


def hello(hub, kind, device, first):
    """A web device's heartbeat; the first of a stream also has its screen sent again."""
    def step(now):
        hub.uplink(now, kind, device, "status", {"online": True, "fw": WEB_FW, "hb": WEB_HB_S})
        if not first:
            return
        if kind == "kds":
            hub.stations.resend(device)
        else:
            hub.pagers.touch(device)
    step.__name__ = "web_hello"
    hub.submit(step)


def bye(hub, kind, device):
    """The page was closed on purpose: the device is offline now, no alert raised."""
    payload = {"online": False, "reason": "sleep"}
    try:
        in_core(hub, lambda now: hub.uplink(now, kind, device, "status", payload))
    except RuntimeError:
        log.warning("web %s %s: could not mark it offline", kind, device)


def event(name, data):
    return "event: %s\ndata: %s\n\n" % (name, data)


def dump(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def rounds(hub, feed, stream):
    """The SSE text of one open page, bounded by STREAM_S."""
    yield "retry: 2000\n\n"
    yield event("clock", dump({"now": hub.clock()}))
    sent, seen = {}, None
    now = time.monotonic
    end, rendered, beat = now() + STREAM_S, 0.0, None
    while now() < end:
        if stream.device and (beat is None or now() - beat >= BEAT_S):
            hello(hub, *stream.device, first=beat is None)
            beat = now()
        revision = feed.wait(seen, PING_S)
        if revision == seen and now() - rendered < REFRESH_S:
            yield ": ping\n\n"
            continue
        if revision != seen:
            time.sleep(SETTLE_S)
        seen, rendered = feed.revision, now()
        if not stream.alive():
            yield event("gone", "{}")
            return
        for name, fn in stream.views.items():
            try:
                data = dump(fn())
            except Exception:
                log.exception("live view %s failed", name)
                continue
            if sent.get(name) != data:
                sent[name] = data
                yield event(name, data)


def blueprint(hub, feed):
    bp = Blueprint("feed", __name__)

    @bp.get("/live")
    def live():
        page = request.args.get("v", "")
        opener = feed.pages.get(page)
        if opener is None:
            return {"error": "v: must be one of %s" % ", ".join(sorted(feed.pages))}, 400
        stream = opener(request.args)
        return Response(rounds(hub, feed, stream), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return bp
