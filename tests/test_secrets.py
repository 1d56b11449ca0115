"""Production mode (--auth) refuses default and empty passwords, and no secret ever reaches
the hub's log, even at DEBUG with every library talking: MQTT passwords (devices, the hub,
the admin, a wrong guess), the admin token, web passwords and session cookies, order
channel and status webhook secrets."""
import http.cookiejar
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from hub.accounts import AccountError, Accounts
from hub.floor import Floor
from hub.store import Store
from tests import order_channels as ch
from tests.brokers import free_port, start_hub, wait_until
from tests.secure_site import Dev, T, WAIT_S
from tests.test_fleet_auth import register

ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANNEL_SECRET = "toast-signing-secret-0f3a9c"
WEBHOOK_SECRET = "status-webhook-secret-77d1e2"
PASSWORD = "manager password 密码 1"


@pytest.mark.parametrize("password", ["", "demo", "short"])
def test_production_accounts_refuse_empty_and_default_passwords(tmp_path, password):
    store = Store(tmp_path / "hub.sqlite3")
    try:
        accounts = Accounts(store, Floor(store))
        with pytest.raises(AccountError, match="^password: at least 8 characters$"):
            accounts.save(time.time(), "dora", "manager", password)
        assert accounts.login("dora", password, demo=False) is None
        assert accounts.login("manager", "demo", demo=False) is None  # no demo logins outside the demo
    finally:
        store.close()
    cli = subprocess.run([sys.executable, "-m", "hub.accounts", "--data-dir", str(tmp_path), "add", "dora",
                          "--password-stdin"], input=password + "\n", capture_output=True, text=True, cwd=ROOT_DIR)
    assert cli.returncode != 0 and "password: at least 8 characters" in cli.stderr


def web_login(base, name, password):
    """(a browser logged in as name, the secrets it holds: cookies and CSRF token)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/login", timeout=10).read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"name": name, "password": password, "csrf": csrf}).encode()
    try:
        opener.open(base + "/login", data=data, timeout=10).read()
    except urllib.error.HTTPError as err:
        err.read()
    return opener, [c.value for c in jar] + [csrf]


def test_no_secret_reaches_the_log(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Store(data / "hub.sqlite3").close()
    made = subprocess.run([sys.executable, "-m", "hub.accounts", "--data-dir", str(data), "add", "dora", "--role",
                           "manager", "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True,
                          cwd=ROOT_DIR)
    assert made.returncode == 0, made.stderr
    pos = ch.StatusServer()
    mport, hport = free_port(), free_port()
    hub = start_hub(tmp_path, mport, hport, extra=[
        "--auth", "--log-level", "DEBUG", "--channel-secret", "toast=" + CHANNEL_SECRET,
        "--status-webhook", pos.url, "--webhook-secret", WEBHOOK_SECRET])
    try:
        auth = data / "auth"
        token = (auth / "admin.token").read_text().strip()
        secrets = {"admin token": token, "hub MQTT password": (auth / "hub.secret").read_text().strip(),
                   "admin MQTT password": (auth / "admin.secret").read_text().strip(),
                   "channel secret": CHANNEL_SECRET, "webhook secret": WEBHOOK_SECRET, "web password": PASSWORD}
        t1 = register(hub, token, "table", "T1")
        secrets["device password"] = t1["password"]
        dev = Dev(mport, t1, "rfm-demo-table-T1", subscribe=[T("table", "T1", "feedback")])
        dev.send(T("table", "T1", "call"), {"id": "T1-1", "action": "raise", "type": "water"})
        wait_until(lambda: dev.got, WAIT_S, "feedback")
        dev.close()
        guess = "a-wrong-guess-5e1b"
        assert Dev(mport, dict(t1, password=guess), "rfm-demo-table-T1").connack != 0
        secrets["a wrong MQTT password"] = guess
        browser, held = web_login(hub.http, "dora", PASSWORD)
        for n, value in enumerate(held):
            secrets["web session or CSRF token %d" % n] = value
        web_login(hub.http, "dora", "wrong web password 9")
        # a diner's table link carries the table's token: a diner opens it
        tables = json.loads(browser.open(hub.http + "/api/tables", timeout=10).read())["tables"]
        url = tables[0]["url"]
        secrets["diner token"] = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["k"][0]
        urllib.request.urlopen(hub.http + urllib.parse.urlsplit(url).path + "?" + urllib.parse.urlsplit(url).query,
                               timeout=10).read()
        secrets["a wrong web password"] = "wrong web password 9"
        path, body, headers = ch.toast(CHANNEL_SECRET, "g-1", [("s1", "宫保鸡丁", 1, [], False)])
        assert ch.post(hub.http, path, body, headers)[0] == 201
        pos.wait(WEBHOOK_SECRET, lambda got: got, "a signed status webhook")
    finally:
        assert hub.stop() == 0
        pos.close()
    log = hub.log()
    assert "DEBUG" in log
    leaked = [name for name, value in secrets.items() if value and value in log]
    assert leaked == [], leaked
