"""The web pages without a browser: logins, roles, sessions, CSRF, table tokens, the live
feed, and the acts the pages send (diner call, waiter ack, kitchen bump, settings).

In-process: the hub's core thread and Flask's test client, with a bus that records what
would be published (tests/test_web_browser.py runs the pages in Chromium against a real hub)."""
import json
import pathlib
import re

import pytest

from hub.access import Access
from hub.api import create_app
from hub.core import Hub
from hub.floor_api import in_core
from hub.kitchen import stored_menu
from hub.store import Store

from tests.service import FakeBus

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALLERGY = "花生过敏"


class Site:
    def __init__(self, tmp_path, auth=False):
        self.store = Store(tmp_path / "hub.sqlite3")
        self.hub = Hub(self.store, "demo")
        self.hub.bus = FakeBus()
        self.hub.fleet.setup(tmp_path, Access(tmp_path, "demo") if auth else None, 1883)
        self.hub.start()
        self.app = create_app(self.hub)

    def close(self):
        self.hub.stop()
        self.store.close()

    def client(self, name=None, password="demo", base_url="http://localhost"):
        """A browser: a test client with its cookies, logged in as name if given."""
        c = self.app.test_client()
        c.environ_base["HTTP_ACCEPT"] = "text/html"
        if name:
            resp = login(c, name, password, base_url)
            assert resp.status_code == 302, resp.get_data(as_text=True)
        return c

    def up(self, kind, device, message, payload):
        in_core(self.hub, self.hub.uplink, kind, device, message, payload)

    def call(self, call_id):
        return self.store.one("SELECT * FROM calls WHERE id = ?", (call_id,))


def csrf_of(client, path="/"):
    page = client.get(path).get_data(as_text=True)
    boot = re.search(r'<script id="rfm" type="application/json">(.*?)</script>', page, re.S)
    if boot and json.loads(boot.group(1)).get("csrf"):
        return json.loads(boot.group(1))["csrf"]
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def login(client, name, password, base_url="http://localhost"):
    page = client.get("/login", base_url=base_url).get_data(as_text=True)
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"name": name, "password": password, "csrf": token}, base_url=base_url)


def send(client, method, path, body=None, csrf=None, headers=None):
    headers = dict(headers or {})
    if csrf:
        headers["X-CSRF-Token"] = csrf
    return client.open(path, method=method, headers=headers, content_type="application/json",
                       data=None if body is None else json.dumps(body, ensure_ascii=False).encode())


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


def test_login_sets_a_strict_http_only_session(site):
    c = site.app.test_client()
    assert login(c, "manager", "wrong").status_code == 401
    assert login(c, "nobody", "demo").status_code == 401
    resp = login(c, "manager", "demo")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    cookie = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("rfm_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    secure = login(site.app.test_client(), "manager", "demo", base_url="https://hub.local")
    assert "Secure" in [h for h in secure.headers.getlist("Set-Cookie") if h.startswith("rfm_session=")][0]
    # a login form without its token is refused (login CSRF)
    fresh = site.app.test_client()
    assert fresh.post("/login", data={"name": "manager", "password": "demo"}).status_code == 403


def test_failed_logins_are_held_back(site):
    c = site.app.test_client()
    for _ in range(5):
        assert login(c, "manager", "nope").status_code == 401
    assert login(c, "manager", "demo").status_code == 429


def test_roles_keep_staff_off_manager_pages(site):
    anon = site.client()
    assert anon.get("/dashboard").status_code == 302
    assert anon.get("/api/dashboard").status_code == 401
    staff = site.client("staff")
    assert staff.get("/dashboard").status_code == 403
    assert staff.get("/api/dashboard").status_code == 403
    assert staff.get("/settings/floor").status_code == 403
    assert staff.get("/waiter").status_code == 200 and staff.get("/kitchen/wok").status_code == 200
    manager = site.client("manager")
    body = manager.get("/api/dashboard").json
    assert set(body) == {"floor", "staff", "kitchen", "devices"}
    assert [s["name"] for s in body["floor"]["sections"]] == ["A", "B"]
    assert manager.get("/dashboard").status_code == 200


def test_mutations_from_a_session_need_its_csrf_token(site):
    manager = site.client("manager")
    doc = manager.get("/api/floor").json
    doc["max_tasks"] = 7
    assert send(manager, "PUT", "/api/floor", doc).status_code == 403
    assert send(manager, "PUT", "/api/floor", doc, csrf="forged").status_code == 403
    token = csrf_of(manager)
    assert send(manager, "PUT", "/api/floor", doc, csrf=token).status_code == 200
    assert site.hub.floor.max_tasks == 7
    staff = site.client("staff")
    assert send(staff, "PUT", "/api/floor", doc, csrf=csrf_of(staff)).status_code == 403
    # a form post (logout) checks the token too
    assert manager.post("/logout", data={}).status_code == 403
    assert manager.post("/logout", data={"csrf": token}).status_code == 302
    assert manager.get("/api/dashboard").status_code == 401


def test_auth_mode_has_no_demo_logins_and_guards_manager_writes(tmp_path):
    s = Site(tmp_path, auth=True)
    try:
        assert login(s.app.test_client(), "manager", "demo").status_code == 401
        doc = s.app.test_client().get("/api/floor").json
        assert send(s.app.test_client(), "PUT", "/api/floor", doc).status_code == 401
        token = s.hub.fleet.access.admin_token()
        assert send(s.app.test_client(), "PUT", "/api/floor", doc,
                    headers={"Authorization": "Bearer " + token}).status_code == 200
        in_core(s.hub, lambda now: s.hub.accounts.save(now, "dora", "manager", "correct horse", "dora"))
        c = s.client("dora", "correct horse")
        assert c.get("/api/dashboard").status_code == 200
    finally:
        s.close()


def test_accounts_screen_api_and_password_change_ends_sessions(site):
    manager = site.client("manager")
    token = csrf_of(manager)
    short = send(manager, "PUT", "/api/accounts/eve", {"role": "staff", "password": "short"}, csrf=token)
    assert short.status_code == 400 and short.json["field"] == "password"
    bad = send(manager, "PUT", "/api/accounts/eve", {"role": "staff", "password": "long enough", "waiter": "zed"},
               csrf=token)
    assert bad.status_code == 400 and bad.json["field"] == "waiter"
    assert send(manager, "PUT", "/api/accounts/eve", {"role": "staff", "password": "long enough", "waiter": "ben"},
                csrf=token).status_code == 201
    eve = site.client("eve", "long enough")
    assert eve.get("/waiter").status_code == 200
    assert send(manager, "PUT", "/api/accounts/eve", {"role": "staff", "password": "another one"},
                csrf=token).status_code == 200
    assert eve.get("/waiter").status_code == 302  # the old session is over
    assert send(manager, "DELETE", "/api/accounts/manager", csrf=token).status_code == 400
    assert send(manager, "DELETE", "/api/accounts/eve", csrf=token).status_code == 200
    assert login(site.app.test_client(), "eve", "another one").status_code == 401


def test_diner_token_guards_the_table_and_rotation_revokes_it(site):
    manager = site.client("manager")
    tables = manager.get("/api/tables").json["tables"]
    t1 = [t for t in tables if t["table"] == "T1"][0]
    token = t1["url"].split("k=")[1]
    assert t1["url"].startswith("http://localhost/t/T1?k=")
    diner = site.app.test_client()
    assert diner.get("/t/T1?k=" + token).status_code == 200
    assert diner.get("/t/T1?k=wrong").status_code == 403
    assert diner.get("/t/T2?k=" + token).status_code == 403  # another table's code
    assert diner.get("/t/T99?k=" + token).status_code == 404
    raise_ = {"id": "T1-w00c0ffee", "action": "raise", "type": "water"}
    assert send(diner, "POST", "/api/diner/T1/call", raise_).status_code == 403
    assert send(diner, "POST", "/api/diner/T1/call", dict(raise_, type="sushi"),
                headers={"X-Table-Token": token}).json["field"] == "type"
    assert send(diner, "POST", "/api/diner/T1/call", dict(raise_, id="T2-w00c0ffee"),
                headers={"X-Table-Token": token}).json["field"] == "id"
    ok = send(diner, "POST", "/api/diner/T1/call", raise_, headers={"X-Table-Token": token})
    assert ok.status_code == 200
    assert [(c["type"], c["told"]) for c in ok.json["calls"]] == [("water", "seen")]
    assert site.call("T1-w00c0ffee")["state"] == "open"
    assert site.hub.devices.get("table", "T1") is None  # the page is no device
    svg = manager.get("/tables/T1/qr.svg")
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data
    assert send(manager, "POST", "/api/tables/T1/token").status_code == 403  # no CSRF token
    rotated = send(manager, "POST", "/api/tables/T1/token", csrf=csrf_of(manager))
    assert rotated.status_code == 200 and token not in rotated.json["url"]
    assert manager.get("/tables/T1/qr.svg").data != svg.data
    assert diner.get("/api/diner/T1?k=" + token).status_code == 403
    assert diner.get("/api/diner/T1?k=" + rotated.json["url"].split("k=")[1]).status_code == 200


def test_waiter_phone_acts_as_the_waiters_pager(site):
    ana = site.client("ana")  # demo login named after the waiter: pager P1
    token = csrf_of(ana, "/waiter")
    site.up("pager", "P1", "status", {"online": True, "hb": 30})
    table_token = in_core(site.hub, site.hub.tokens.issue, "T1")
    diner = site.app.test_client()
    send(diner, "POST", "/api/diner/T1/call", {"id": "T1-w0000aa01", "action": "raise", "type": "waiter"},
         headers={"X-Table-Token": table_token})
    assert site.call("T1-w0000aa01")["pager"] == "P1"
    assert send(ana, "POST", "/api/waiter/act", {"id": "T1-w0000aa01", "action": "ack"}).status_code == 403
    bad = send(ana, "POST", "/api/waiter/act", {"id": "T1-w0000aa01", "action": "hug"}, csrf=token)
    assert bad.status_code == 400 and bad.json["field"] == "action"
    assert send(ana, "POST", "/api/waiter/act", {"id": "T1-w0000aa01", "action": "ack"}, csrf=token).status_code == 200
    assert site.call("T1-w0000aa01")["state"] == "acked"
    told = diner.get("/api/diner/T1?k=" + table_token).json["calls"][0]
    assert told["told"] == "on_the_way" and told["by"] == "Ana"
    ben = site.client("ben")
    gone = send(ben, "POST", "/api/waiter/act", {"id": "T1-w0000aa01", "action": "done"}, csrf=csrf_of(ben))
    assert gone.status_code == 409 and "not on pager P2" in gone.json["error"]
    # a shared login picks the waiter; a waiter's own login cannot
    staff = site.client("staff")
    assert send(staff, "POST", "/api/waiter/act", {"id": "x", "action": "ack"}, csrf=csrf_of(staff)).status_code == 409
    assert send(staff, "POST", "/api/waiter/as", {"waiter": "cai"}, csrf=csrf_of(staff)).status_code == 200
    assert send(ana, "POST", "/api/waiter/as", {"waiter": "cai"}, csrf=token).status_code == 403
    # leaving the page on purpose takes the pager offline at once, without a device alert
    assert send(ana, "POST", "/api/waiter/bye", {}, csrf=token).status_code == 200
    p1 = site.hub.devices.get("pager", "P1")
    assert not p1["online"] and p1["reason"] == "sleep"
    assert site.call("T1-w0000aa01")["state"] == "open"  # nobody else is at work to take it


def test_accounts_cli_makes_a_login(tmp_path):
    import subprocess
    import sys
    Store(tmp_path / "hub.sqlite3").close()
    cli = [sys.executable, "-m", "hub.accounts", "--data-dir", str(tmp_path)]
    assert "manager or staff" in subprocess.run(cli + ["--help"], capture_output=True, text=True, cwd=ROOT).stdout
    short = subprocess.run(cli + ["add", "dora", "--role", "manager", "--password-stdin"], input="short\n",
                           capture_output=True, text=True, cwd=ROOT)
    assert short.returncode == 2 and "password: at least 8 characters" in short.stderr
    made = subprocess.run(cli + ["add", "dora", "--role", "manager", "--waiter", "dora", "--password-stdin"],
                          input="打开 sesame\n", capture_output=True, text=True, cwd=ROOT)
    assert made.returncode == 0 and "created dora (manager)" in made.stdout
    listed = subprocess.run(cli + ["list"], capture_output=True, text=True, cwd=ROOT).stdout
    assert listed.split() == ["dora", "manager", "dora"]
    s = Site(tmp_path, auth=True)
    try:
        assert s.client("dora", "打开 sesame").get("/api/dashboard").status_code == 200
    finally:
        s.close()


def test_web_kitchen_display_bumps_with_the_stations_rules(site):
    cook = site.client("staff")
    token = csrf_of(cook, "/kitchen/wok")
    order = {"channel": "pos", "ref": "w1", "number": "A7", "allergy": ALLERGY,
             "items": [{"name": "宫保鸡丁", "qty": 1}]}
    made = send(site.app.test_client(), "POST", "/api/orders", order).json
    ticket = [t for t in made["tickets"] if t.endswith("-wok")][0]
    refused = send(cook, "POST", "/api/kitchen/wok/bump", {"id": ticket, "action": "bump"}, csrf=token)
    assert refused.status_code == 409 and ALLERGY in refused.json["error"]
    wrong = send(cook, "POST", "/api/kitchen/cold/bump", {"id": ticket, "action": "bump"}, csrf=token)
    assert wrong.status_code == 409 and "belongs to station wok" in wrong.json["error"]
    assert send(cook, "POST", "/api/kitchen/wok/bump", {"id": ticket, "action": "allergy_ack"},
                csrf=token).status_code == 200
    assert send(cook, "POST", "/api/kitchen/wok/bump", {"id": ticket, "action": "bump"}, csrf=token).status_code == 200
    assert site.app.test_client().get("/api/board").json == {"preparing": [], "ready": ["A7"]}
    assert send(cook, "POST", "/api/kitchen/wok/bump", {"id": "last", "action": "recall"},
                csrf=token).status_code == 200
    assert site.app.test_client().get("/api/board").json == {"preparing": ["A7"], "ready": []}
    assert send(cook, "POST", "/api/kitchen/nope/bump", {"id": ticket, "action": "bump"}, csrf=token).status_code == 404
    # the kitchen metrics and the CSV see the bump
    send(cook, "POST", "/api/kitchen/wok/bump", {"id": ticket, "action": "bump"}, csrf=token)
    assert site.app.test_client().get("/api/metrics/kitchen").json["by_station"]["wok"]["n"] == 1
    csv = site.client("manager").get("/export/tickets.csv")
    text = csv.data.decode("utf-8")
    assert text.startswith("\ufeffticket,order,number") and "宫保鸡丁×1" in text and csv.mimetype == "text/csv"


def test_menu_routing_is_validated_named_and_kept(site, tmp_path):
    site.hub.stations.menu.path = str(tmp_path / "menu.json")  # as with --menu FILE
    manager = site.client("manager")
    token = csrf_of(manager)
    menu = manager.get("/api/menu").json
    assert menu["items"]["宫保鸡丁"] == "wok" and menu["stations"]["expo"]["expo"] is True
    bad = json.loads(json.dumps(menu))
    bad["stations"]["wok"]["warn_min"] = -1
    resp = send(manager, "PUT", "/api/menu", bad, csrf=token)
    assert resp.status_code == 400 and resp.json["field"] == "stations.wok.warn_min"
    bad = json.loads(json.dumps(menu))
    bad["items"]["拍黄瓜"] = "grill"
    assert send(manager, "PUT", "/api/menu", bad, csrf=token).json["field"] == "items.拍黄瓜"
    good = json.loads(json.dumps(menu))
    good["items"]["拍黄瓜"] = "cold"
    assert send(manager, "PUT", "/api/menu", good, csrf=token).status_code == 200
    assert site.hub.stations.menu.route("拍黄瓜") == "cold"
    assert stored_menu(site.store).route("拍黄瓜") == "cold"
    assert json.loads((tmp_path / "menu.json").read_text(encoding="utf-8"))["items"]["拍黄瓜"] == "cold"
    send(site.app.test_client(), "POST", "/api/orders", {"channel": "pos", "ref": "m1", "items": [{"name": "点心",
         "qty": 1, "category": "点心"}]})
    gone = json.loads(json.dumps(good))
    del gone["stations"]["pastry"]
    gone["categories"] = {k: v for k, v in gone["categories"].items() if v != "pastry"}
    gone["items"] = {k: v for k, v in gone["items"].items() if v != "pastry"}
    resp = send(manager, "PUT", "/api/menu", gone, csrf=token)
    assert resp.status_code == 400 and resp.json["field"] == "stations.pastry" and "open tickets" in resp.json["error"]


def read_events(resp, want, limit=40):
    """(event, data) pairs from an SSE response until `want` of them were read."""
    got, name = [], None
    chunks = iter(resp.response)
    for _ in range(limit):
        for line in next(chunks).decode("utf-8").splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                got.append((name, json.loads(line[6:])))
        if len(got) >= want:
            return got
    raise AssertionError("only %r" % got)


def test_live_feed_pages_and_access(site):
    anon = site.app.test_client()
    assert anon.get("/live?v=nope").status_code == 400
    assert anon.get("/live?v=dashboard").status_code == 401
    assert site.client("staff").get("/live?v=dashboard").status_code == 403
    assert anon.get("/live?v=table&table=T1&k=bad").status_code == 403
    resp = anon.get("/live?v=board")
    try:
        assert resp.mimetype == "text/event-stream"
        events = read_events(resp, 2)
        assert events[0][0] == "clock" and events[1] == ("board", {"preparing": [], "ready": []})
        send(anon, "POST", "/api/orders", {"channel": "pos", "ref": "l1", "number": "88",
                                           "items": [{"name": "凉拌黄瓜", "qty": 1}]})
        assert read_events(resp, 1) == [("board", {"preparing": ["88"], "ready": []})]
    finally:
        resp.close()
    # a kitchen display page is that display: online, and shown the payload the device gets
    cook = site.client("staff")
    resp = cook.get("/live?v=kds&device=cold")
    try:
        kds = [d for name, d in read_events(resp, 2) if name == "kds"][0]
        assert kds["station"] == "cold" and kds["snapshot"] == site.hub.stations.snapshot("cold")
        assert [t["num"] for t in kds["snapshot"]["tickets"]] == ["88"]
        assert site.hub.devices.get("kds", "cold")["fw"] == "web"
    finally:
        resp.close()


def test_every_message_is_in_both_languages_and_every_key_used_exists(site):
    messages = json.loads((ROOT / "hub" / "messages.json").read_text(encoding="utf-8"))
    assert set(messages["en"]) == set(messages["zh"])
    used = set()
    for path in [*(ROOT / "hub" / "templates").glob("*.html"), *(ROOT / "hub" / "static").glob("*.js"),
                 *(ROOT / "hub").glob("*.py")]:
        used.update(re.findall(r"""\bt\(["'](\w+)["']\s*[,)]""", path.read_text(encoding="utf-8")))
    assert used and not used - set(messages["en"])
    c = site.client("manager")
    assert "经理看板" not in c.get("/").get_data(as_text=True)
    assert c.get("/lang/zh?next=/").headers["Location"] == "/"
    assert "经理看板" in c.get("/").get_data(as_text=True)
    assert c.get("/lang/zh?next=//evil.example").headers["Location"] == "/"
