"""The web pages' common ground: sessions, roles, CSRF, languages, and the page blueprints.

    GET  /               the pages this login may open
    GET  /login, POST /login, POST /logout
    GET  /lang/<en|zh>   switch the UI language (a cookie), back to ?next=

Sessions are signed cookies (HttpOnly, SameSite=Strict, Secure when served over HTTPS) with
a key kept in the database. A mutating request made with a logged-in session must carry the
session's CSRF token (header X-CSRF-Token, or form field csrf). Roles: manager (dashboard,
settings, table QR codes) and staff (kitchen display, waiter phone). hub/accounts.py has the
logins, including the demo ones. Every page and string comes in English and Simplified
Chinese from hub/messages.json.
"""
import datetime
import functools
import hmac
import json
import pathlib
import secrets
import time

from flask import Blueprint, abort, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from hub import dashboard, diners, feed as _feed, kitchen, phones, settings
from hub.accounts import Accounts
from hub.intake import board_json

LANGS = ("en", "zh")
MESSAGES = json.loads((pathlib.Path(__file__).parent / "messages.json").read_text(encoding="utf-8"))
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SESSION_HOURS = 12
LOGIN_TRIES = 5  # failed logins per name within LOGIN_WINDOW_S before it is held back
LOGIN_WINDOW_S = 300
MAX_FAILURES = 1000  # names with failed logins remembered before stale ones are dropped
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # diner URLs carry the table's token
}
WEB_BLUEPRINTS = ("web", "feed", "dashboard", "diners", "kitchen", "phones", "settings")
# Writes a browser may only make as a manager; in --auth mode also open to the admin token.
MANAGER_WRITES = ("floor.put_floor", "kitchen.put_menu")


class Sessions(SecureCookieSessionInterface):
    def get_cookie_secure(self, app):
        return request.is_secure


def demo_mode(hub):
    return hub.fleet.access is None


def lang():
    chosen = request.cookies.get("lang")
    if chosen in LANGS:
        return chosen
    return request.accept_languages.best_match(["en", "zh", "zh-CN", "zh-Hans"], "en")[:2]


def t(key, **args):
    text = MESSAGES[g.get("lang") or lang()].get(key) or MESSAGES["en"].get(key, key)
    return text.format(**args) if args else text


def user():
    """The logged-in user of this request (dict with name, role, waiter, gen) or None."""
    return g.get("user")


def csrf_token():
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_ok(given):
    want = session.get("csrf")
    return bool(want and given) and hmac.compare_digest(given.encode(), want.encode())


def needs(role=None):
    """Decorator: a logged-in user (of `role` if given). A page sends strangers to the login."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            u = user()
            api = request.path.startswith(("/api/", "/export/", "/live"))
            if u is None:
                if api:
                    abort(401, "login: log in first")
                return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
            if role and u["role"] != role:
                if api:
                    abort(403, "role: this needs a %s login" % role)
                return page("error.html", t("forbidden"), message=t("needs_" + role)), 403
            return fn(*args, **kwargs)
        return inner
    return wrap


def page(template, title, script=None, **context):
    """Render a page: its data for the scripts goes in one JSON block."""
    boot = {"lang": g.lang, "csrf": csrf_token() if user() else None, "t": MESSAGES[g.lang],
            "user": user() and {"name": user()["name"], "role": user()["role"]}}
    boot.update(context.pop("boot", {}))
    return render_template(template, title=title, script=script, boot=boot, **context)


def register(app, hub):
    """Set up sessions, CSRF, languages and every web blueprint on the hub's Flask app."""
    app.secret_key = hub.store.setting("web_secret", secrets.token_hex(32))
    app.session_interface = Sessions()
    app.config.update(SESSION_COOKIE_NAME="rfm_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict",
                      PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=SESSION_HOURS))
    hub.accounts = Accounts(hub.store, hub.floor)
    if getattr(hub, "feed", None) is None:
        hub.feed = _feed.Feed()
        hub.watchers.append(hub.feed.committed)
    hub.feed.pages["board"] = lambda args: _feed.Stream({"board": lambda: board_json(hub)})
    failures = {}

    @app.before_request
    def guard():
        g.lang = lang()
        g.user = None
        name = session.get("user")
        if name:
            g.user = hub.accounts.current(name, session.get("gen"), demo_mode(hub))
            if g.user is None:
                session.clear()
        if request.method in SAFE_METHODS:
            return None
        if g.user is not None:
            if not csrf_ok(request.headers.get("X-CSRF-Token") or request.form.get("csrf")):
                abort(403, "csrf: missing or wrong token; reload the page")
        if request.endpoint in MANAGER_WRITES:
            if g.user is not None:
                if g.user["role"] != "manager":
                    abort(403, "role: this needs a manager login")
            elif not demo_mode(hub) and not admin_token_ok(hub):
                abort(401, "login: log in as a manager, or send 'Authorization: Bearer <admin token>'")
        return None

    @app.after_request
    def headers(resp):
        if request.blueprint in WEB_BLUEPRINTS:
            for key, value in PAGE_HEADERS.items():
                resp.headers.setdefault(key, value)
        return resp

    @app.context_processor
    def helpers():
        return {"t": t, "lang": g.get("lang", "en"), "user": user(), "langs": LANGS,
                "demo": demo_mode(hub), "csrf": csrf_token}

    app.register_blueprint(blueprint(hub, failures))
    app.register_blueprint(_feed.blueprint(hub, hub.feed))
    for module in (dashboard, diners, kitchen, phones, settings):
        app.register_blueprint(module.blueprint(hub))


def blueprint(hub, failures):
    bp = Blueprint("web", __name__)

    @bp.get("/")
    def home():
        if user() is None:
            return redirect(url_for("web.login"))
        menu = hub.stations.menu
        kds = [(s.label, d) for s in menu.stations.values() for d in s.devices]
        return page("home.html", t("home"), kds=kds)

    def login_page(error=None, status=200):
        return page("login.html", t("login"), error=error, next=request.values.get("next", "")), status

    @bp.get("/login")
    def login():
        return login_page()

    @bp.post("/login")
    def do_login():
        if not csrf_ok(request.form.get("csrf")):
            return login_page(t("login_expired"), 403)
        name = (request.form.get("name") or "").strip().lower()
        password = request.form.get("password") or ""
        now = time.monotonic()
        recent = [at for at in failures.get(name, []) if now - at < LOGIN_WINDOW_S]
        if len(recent) >= LOGIN_TRIES:
            return login_page(t("login_held"), 429)
        found = hub.accounts.login(name, password, demo_mode(hub)) if name and password else None
        if found is None:
            if len(failures) > MAX_FAILURES:
                for stale in [k for k, v in failures.items() if now - v[-1] >= LOGIN_WINDOW_S]:
                    del failures[stale]
            failures[name] = recent + [now]
            return login_page(t("login_wrong"), 401)
        failures.pop(name, None)
        session.clear()
        session.permanent = True
        session.update(user=found["name"], gen=found["gen"], csrf=secrets.token_urlsafe(32))
        return redirect(local(request.form.get("next"), url_for("web.home")))

    @bp.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("web.login"))

    @bp.get("/lang/<code>")
    def set_lang(code):
        if code not in LANGS:
            abort(404, "lang: must be one of %s" % ", ".join(LANGS))
        resp = redirect(local(request.args.get("next"), "/"))
        resp.set_cookie("lang", code, max_age=365 * 86400, samesite="Lax")
        return resp

    return bp


def local(target, default):
    """target if it is a path on this site, else default (no open redirects)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def admin_token_ok(hub):
    given = request.headers.get("Authorization", "")
    want = "Bearer " + hub.fleet.access.admin_token()
    return hmac.compare_digest(given.encode(), want.encode())
