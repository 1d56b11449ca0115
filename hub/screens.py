"""Display previews: what a kitchen display or a waiter pager shows right now, as PNG,
drawn by the same display/ code the devices run (on display.canvas instead of framebuf).

GET /api/displays/<device_id>/screen.png[?layout=lcd|eink][&selected=N]

A kitchen display is drawn from its last published tickets snapshot (with its station's
ageing thresholds) and each ticket's age counted to now; `layout` picks the panel
(default lcd), `selected` the highlighted ticket. A pager is drawn from its current
ranked task list. 404 for any other device.
"""
import time

from flask import Blueprint, Response, abort, request

from display import canvas, font, kds, pager
from hub.floor_api import in_core


def kds_scene(now, hub, device):
    """(snapshot, ages, (warn_s, late_s), online) of a kitchen display, or None."""
    snap = hub.stations.snapshot(device)
    row = hub.devices.get("kds", device)
    if snap is None and row is None:
        return None
    snap = snap or {"seq": 0, "station": device, "tickets": []}
    ages = []
    for t in snap["tickets"]:
        opened = hub.stations.ticket(t["id"])
        ages.append(int(now - opened["opened_at"]) if opened else t["age"])
    limits = (snap.get("warn", kds.WARN_S), snap.get("late", kds.LATE_S))
    return snap, ages, limits, bool(row and row["online"])


def pager_scene(now, hub, device):
    row = hub.devices.get("pager", device)
    if row is None:
        return None
    return [task.wire(now) for task in hub.pagers.tasks(device)], bool(row["online"])


def kds_png(snap, ages, limits, online, layout="lcd", selected=0):
    L = kds.layout(layout, *limits)
    panel = canvas.Panel(L.width, L.height, L.fmt)
    view = kds.View(L, font.default(), panel)
    view.draw(snap["station"], snap["tickets"], ages, lambda t: t.get("allergy_ack"), selected, online, full=True,
              more=snap.get("more", 0))
    return canvas.png(panel.fb)


def pager_png(tasks, online, now):
    fb = canvas.FrameBuffer(bytearray(128 * 64 // 8), 128, 64, canvas.MONO_VLSB)
    pager.render(fb, tasks, 0, int(now), int(now), online)
    return canvas.png(fb)


def blueprint(hub):
    bp = Blueprint("screens", __name__)

    @bp.get("/api/displays/<device_id>/screen.png")
    def screen(device_id):
        layout = request.args.get("layout", "lcd")
        if layout not in kds.NAMES:
            abort(400, "layout: must be one of %s" % ", ".join(kds.NAMES))
        selected = request.args.get("selected", "0")
        if not selected.isdigit():
            abort(400, "selected: must be a ticket number from 0")
        scene = in_core(hub, kds_scene, hub, device_id)
        if scene is not None:
            png = kds_png(*scene, layout=layout, selected=int(selected))
        else:
            found = in_core(hub, pager_scene, hub, device_id)
            if found is None:
                abort(404, "no kitchen display or pager %r" % device_id)
            png = pager_png(found[0], found[1], time.time())
        return Response(png, mimetype="image/png", headers={"Cache-Control": "no-store"})

    return bp
