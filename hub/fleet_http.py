"""HTTP routes for technicians: register a device, the fleet view, firmware and updates.

    POST /api/devices            {kind, id, model?} -> its own MQTT username and password
    GET  /api/fleet[?kind=]      every device: kind, online, battery, RSSI, fw, last seen, alerts
    POST /api/fleet/update       {kind, version?, batch?, timeout?, devices?} -> the rollout
    GET  /api/fleet/update[/<n>] rollouts and their progress
    GET  /api/firmware[/<kind>[/<version>]]   manifests {kind, version, sha256, size, url}
    GET  /fw/<kind>/<version>.bin            the bundle a device downloads

With --auth, the POSTs need "Authorization: Bearer <data-dir/auth/admin.token>".
"""
import concurrent.futures
import hmac
import json
import pathlib
import threading

from flask import Blueprint, request, send_file

import protocol
from hub import access as auth
from hub.firmware import APP_OF, FirmwareError, check_version

ROOT_PINS = pathlib.Path(__file__).resolve().parent.parent / "hardware" / "pins"
CORE_TIMEOUT_S = 10
MAX_BATCH = 50


def in_core(hub, fn, *args):
    """Run fn(now, *args) on the hub's worker thread in one transaction; return its result
    once committed. A ValueError it raises (a refused request) is raised here."""
    done = concurrent.futures.Future()
    box = {}

    def step(now):
        try:
            box["result"] = fn(now, *args)
        except ValueError as exc:  # checked before anything is written
            box["error"] = exc

    def after(ok):
        if not ok:
            done.set_exception(RuntimeError("the hub could not apply the request; see its log"))
        elif "error" in box:
            done.set_exception(box["error"])
        else:
            done.set_result(box["result"])

    step.__name__ = fn.__name__
    hub.submit(step, after=after)
    return done.result(CORE_TIMEOUT_S)


def model_kind(model):
    """The protocol kind a hardware model's pin map declares; ValueError if unknown."""
    if not isinstance(model, str) or not model.replace("_", "").isalnum():
        raise ValueError("model: must be a pin map name such as table_button")
    try:
        with open(ROOT_PINS / ("%s.json" % model), encoding="utf-8") as f:
            return json.load(f)["kind"]
    except FileNotFoundError:
        names = sorted(p.stem for p in ROOT_PINS.glob("*.json"))
        raise ValueError("model: no pin map %r (known: %s)" % (model, ", ".join(names)))


def blueprint(hub):
    from hub.api import iso  # hub.api registers this blueprint

    bp = Blueprint("fleet", __name__)
    fleet = hub.fleet
    write_lock = threading.Lock()

    def refused():
        """401 body if auth is on and the request lacks the admin token, else None."""
        if fleet.access is None:
            return None
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), ("Bearer " + fleet.access.admin_token()).encode()):
            return {"error": "authorization: send 'Bearer <token>' from %s" % fleet.access.path("admin_token")}, 401
        return None

    def body():
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ValueError("body: must be a JSON object")
        return data

    @bp.post("/api/devices")
    def register():
        denied = refused()
        if denied:
            return denied
        try:
            data = body()
            unknown = set(data) - {"kind", "id", "model"}
            if unknown:
                raise ValueError("%s: unknown field" % sorted(unknown)[0])
            kind, dev, model = data.get("kind"), data.get("id"), data.get("model")
            if kind not in protocol.SUBSCRIBES:
                raise ValueError("kind: must be one of %s" % ", ".join(protocol.SUBSCRIBES))
            try:
                protocol.topic(hub.site, kind, dev, "status")
            except protocol.ProtocolError as exc:
                raise ValueError("id: %s" % exc.reason)
            if model is not None and model_kind(model) != kind:
                raise ValueError("model: %s is a %s, not a %s" % (model, model_kind(model), kind))
        except ValueError as exc:
            return {"error": str(exc)}, 400
        password = auth.new_password()
        hashes = auth.amqtt_hash(password), auth.mosquitto_hash(password)
        new = in_core(hub, lambda now: fleet.registry.register(kind, dev, model, *hashes, now))
        if fleet.access is not None:
            with write_lock:
                fleet.access.write(fleet.registry.credentials())
        return {"kind": kind, "id": dev, "model": model, "site": hub.site, "new": new,
                "username": auth.username(kind, dev), "password": password,
                "broker": dict({"port": fleet.mqtt_port}, **({"ca": fleet.ca} if fleet.ca else {})),
                "auth": fleet.access is not None}, 201 if new else 200

    @bp.get("/api/fleet")
    def view():
        kind = request.args.get("kind") or None
        if kind is not None and kind not in protocol.SUBSCRIBES:
            return {"error": "kind: must be one of %s" % ", ".join(protocol.SUBSCRIBES)}, 400
        rows = fleet.view(kind)
        for row in rows:
            row["last_seen"] = iso(row["last_seen"])
            row["registered_at"] = iso(row["registered_at"])
        return {"devices": rows, "low_battery": fleet.low_battery}

    def manifest_json(m):
        return dict(m, published_at=iso(m["published_at"]),
                    url="%sfw/%s/%s.bin" % (request.host_url, m["kind"], m["version"]))

    @bp.get("/api/firmware")
    @bp.get("/api/firmware/<kind>")
    @bp.get("/api/firmware/<kind>/<version>")
    def firmware(kind=None, version=None):
        if kind is None:
            return {"firmware": [manifest_json(m) for m in fleet.firmware.list()]}
        try:
            m = fleet.firmware.manifest(kind, version)
        except FirmwareError as exc:
            return {"error": str(exc)}, 400
        if m is None:
            return {"error": "no %s firmware%s published" % (kind, " " + version if version else "")}, 404
        return manifest_json(m)

    @bp.get("/fw/<kind>/<version>.bin")
    def bundle(kind, version):
        try:
            path = fleet.firmware.path(kind, version)
        except FirmwareError as exc:
            return {"error": str(exc)}, 400
        if not path.exists():
            return {"error": "no %s firmware %s" % (kind, version)}, 404
        return send_file(path, mimetype="application/octet-stream", conditional=False)

    @bp.post("/api/fleet/update")
    def update():
        denied = refused()
        if denied:
            return denied
        try:
            data = body()
            unknown = set(data) - {"kind", "version", "batch", "timeout", "devices", "base_url"}
            if unknown:
                raise ValueError("%s: unknown field" % sorted(unknown)[0])
            kind = data.get("kind")
            if kind not in protocol.SUBSCRIBES or kind not in APP_OF:
                raise ValueError("kind: must be one of %s" % ", ".join(protocol.SUBSCRIBES))
            version = data.get("version")
            if version is not None:
                check_version(version)
            batch, timeout = data.get("batch", 3), data.get("timeout", 300)
            if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
                raise ValueError("batch: must be an integer from 1 to %d" % MAX_BATCH)
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 5 <= timeout <= 3600:
                raise ValueError("timeout: must be 5 to 3600 seconds")
            devices = data.get("devices")
            if devices is not None and (not isinstance(devices, list) or not devices or
                                        not all(isinstance(d, str) for d in devices)):
                raise ValueError("devices: must be a non-empty list of device ids")
            m = fleet.firmware.manifest(kind, version)
            if m is None:
                return {"error": "version: no %s firmware %spublished (python -m hub.firmware publish)"
                        % (kind, version + " " if version else "")}, 404
            base = data.get("base_url") or request.host_url
            url = "%s/fw/%s/%s.bin" % (base.rstrip("/"), kind, m["version"])
            if not url.startswith("http://") or len(url) > 200:
                raise ValueError("base_url: devices need a plain http:// URL under 200 characters")
            up = in_core(hub, lambda now: fleet.start_update(kind, m, url, batch, timeout, now, devices))
        except (ValueError, FirmwareError) as exc:
            return {"error": str(exc)}, 400
        return update_json(up, iso), 202

    @bp.get("/api/fleet/update")
    def updates():
        return {"updates": [update_json(u, iso) for u in fleet.updates()]}

    @bp.get("/api/fleet/update/<int:n>")
    def one_update(n):
        up = fleet.update(n)
        if up is None:
            return {"error": "no update %d" % n}, 404
        return update_json(up, iso)

    return bp


def update_json(up, iso):
    return dict(up, started_at=iso(up["started_at"]), finished_at=iso(up["finished_at"]))
