"""The manager's settings screens: the floor (call types, sections, waiters, shifts,
escalation), the menu's routing to stations, and the web logins.

    GET /settings/floor, /settings/menu, /settings/accounts      the screens (manager)
    GET /api/accounts; PUT, DELETE /api/accounts/<name>           {role, password?, waiter?}

The floor and menu screens save through PUT /api/floor and PUT /api/menu; the error those
answer names the field ("waiters[2].shifts[0]: '25:00' is not a time HH:MM"), and the
screen shows it at that field.
"""
from flask import Blueprint, request

from hub import web
from hub.accounts import AccountError, ROLES
from hub.floor import ROLES as WAITER_ROLES, ROUTES, STEPS
from hub.floor_api import in_core


def blueprint(hub):
    bp = Blueprint("settings", __name__)

    @bp.get("/settings/floor")
    @web.needs("manager")
    def floor():
        return web.page("settings_floor.html", web.t("settings_floor"), script="settings.js",
                        boot={"screen": "floor", "roles": list(WAITER_ROLES), "routes": list(ROUTES),
                              "steps": list(STEPS)})

    @bp.get("/settings/menu")
    @web.needs("manager")
    def menu():
        return web.page("settings_menu.html", web.t("settings_menu"), script="settings.js",
                        boot={"screen": "menu"})

    @bp.get("/settings/accounts")
    @web.needs("manager")
    def accounts():
        return web.page("settings_accounts.html", web.t("settings_accounts"), script="settings.js",
                        boot={"screen": "accounts", "roles": list(ROLES), "me": web.user()["name"]})

    @bp.get("/api/accounts")
    @web.needs("manager")
    def list_accounts():
        return {"accounts": hub.accounts.list(), "waiters": [w["id"] for w in hub.floor.doc["waiters"]],
                "demo": web.demo_mode(hub)}

    @bp.put("/api/accounts/<name>")
    @web.needs("manager")
    def save_account(name):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return {"error": "body: must be a JSON object"}, 400
        unknown = set(body) - {"role", "password", "waiter"}
        if unknown:
            return {"error": "%s: unknown field" % sorted(unknown)[0], "field": sorted(unknown)[0]}, 400
        if name == web.user()["name"] and body.get("role") != "manager":
            return {"error": "role: you cannot take the manager role from your own login", "field": "role"}, 400
        try:
            new = in_core(hub, lambda now: hub.accounts.save(now, name, body.get("role"), body.get("password") or None,
                                                              body.get("waiter") or None))
        except AccountError as exc:
            return {"error": str(exc), "field": exc.field}, 400
        except RuntimeError as exc:
            return {"error": str(exc)}, 503
        return {"name": name, "new": new}, 201 if new else 200

    @bp.delete("/api/accounts/<name>")
    @web.needs("manager")
    def remove_account(name):
        if name == web.user()["name"]:
            return {"error": "name: you cannot remove your own login", "field": "name"}, 400
        if not in_core(hub, lambda now: hub.accounts.remove(now, name)):
            return {"error": "name: no account %s" % name, "field": "name"}, 404
        return {"removed": name}

    return bp
