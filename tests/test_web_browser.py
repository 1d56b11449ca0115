"""The web pages in headless Chromium (Debian's chromium, driven by playwright) against a real
hub process on 127.0.0.1: every page updates live, without a reload.

One browser for the module; each person (diner, waiter, manager, cook, customer) has a
browser context of their own, as on their own device. Screenshots go to test-artifacts/."""
import json
import os
import pathlib
import shutil
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.brokers import free_port, start_hub

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WAIT_MS = 15000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "needs Debian's chromium package (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = start_hub(tmp_path_factory.mktemp("web"), free_port(), free_port())
    yield h
    assert h.stop() == 0, h.log()[-3000:]


def person(browser, hub, name=None, lang="en", width=1280, height=800):
    """A page in a context of its own, logged in as name (demo password) if given."""
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=hub.http)
    context.add_cookies([{"name": "lang", "value": lang, "url": hub.http}])
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = []  # script errors and CSP violations
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.problems = problems
    if name:
        page.goto("/login")
        page.fill("input[name=name]", name)
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_url(hub.http + "/")
    return page


def clean(*pages):
    for page in pages:
        assert not page.problems, "%s: %s" % (page.url, page.problems)


def stay(page):
    """Mark the page; kept() is true while it has not been reloaded or left."""
    page.evaluate("window.__stay = 1")


def kept(page):
    return page.evaluate("window.__stay === 1")


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def post_order(hub, order):
    req = urllib.request.Request(hub.http + "/api/orders", data=json.dumps(order, ensure_ascii=False).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read().decode("utf-8"))


def test_diner_call_reaches_waiter_and_dashboard_and_ack_comes_back(browser, hub):
    manager = person(browser, hub, "manager", lang="zh", width=1400, height=900)
    resp = manager.request.get("/api/tables")
    tables = resp.json()["tables"]
    url = [t["url"] for t in tables if t["table"] == "T1"][0]
    manager.goto("/dashboard")
    expect(manager.locator(".table-tile[data-table=T1]")).to_be_visible()
    waiter = person(browser, hub, "ana", width=420, height=800)
    waiter.goto("/waiter")
    expect(waiter.locator("#who")).to_contain_text("Ana")
    expect(waiter.locator("#who .ok")).to_be_visible()  # the phone's pager P1 is online
    expect(manager.locator(".waiter[data-waiter=ana] .dot.ok")).to_be_visible()
    diner = person(browser, hub, lang="zh", width=420, height=800)
    diner.goto(url)
    expect(diner.locator("h1.table-name")).to_contain_text("T1")
    for page in (manager, waiter, diner):
        stay(page)

    diner.click(".call-button[data-type=waiter]")
    expect(diner.locator(".diner-call.seen")).to_contain_text("已收到")
    task = waiter.locator(".task[data-id^='T1-w']")
    expect(task).to_contain_text("T1")
    expect(task).to_contain_text("Waiter")
    tile = manager.locator(".table-tile[data-table=T1]")
    expect(tile.locator(".tcall")).to_contain_text("服务员")
    expect(tile).to_have_attribute("data-level", "0")
    expect(manager.locator(".waiter[data-waiter=ana] .chip")).to_contain_text("T1")

    task.get_by_role("button", name="Ack").click()
    expect(diner.locator(".diner-call.on_the_way")).to_contain_text("Ana")
    expect(tile.locator(".tcall.acked")).to_be_visible()
    expect(waiter.locator(".task.acked")).to_be_visible()
    shot(diner, "diner.png")
    shot(waiter, "waiter.png")
    shot(manager, "dashboard.png")
    assert all(kept(page) for page in (manager, waiter, diner)), "a page reloaded"
    clean(manager, waiter, diner)

    waiter.once("dialog", lambda dialog: dialog.accept())
    waiter.click("#leave")  # the phone's pager goes offline at once; the call is open again
    waiter.wait_for_url(hub.http + "/")
    expect(manager.locator(".waiter[data-waiter=ana] .dot.bad")).to_be_visible()
    expect(diner.locator(".diner-call.seen")).to_be_visible()
    for page in (manager, waiter, diner):
        page.context.close()


def test_bump_on_the_web_kitchen_display_moves_the_order_to_ready(browser, hub):
    cook = person(browser, hub, "staff", width=1100, height=760)
    cook.goto("/kitchen/wok")
    expect(cook.locator("#station")).to_contain_text("炒锅")
    board = person(browser, hub, width=1280, height=720)
    board.goto("/board")
    for page in (cook, board):
        stay(page)
    made = post_order(hub, {"channel": "miniapp", "ref": "web-42", "number": "A42", "table": "T5",
                            "allergy": "花生过敏", "items": [{"name": "宫保鸡丁", "qty": 2, "mods": ["少辣"]},
                                                         {"name": "麻婆豆腐", "qty": 1}]})
    ticket = cook.locator(".ticket[data-id='%s-wok']" % made["order"])
    expect(ticket).to_contain_text("宫保鸡丁")
    expect(ticket.locator(".allergy")).to_contain_text("花生过敏")
    expect(board.locator("#preparing li")).to_have_text(["A42"])
    expect(ticket.locator("button.bump")).to_be_disabled()  # allergy first, as on the device
    shot(cook, "kitchen.png")

    ticket.locator("button.ack-allergy").click()
    expect(ticket.locator(".allergy.acked")).to_be_visible()
    ticket.locator("button.bump").click()
    expect(board.locator("#ready li")).to_have_text(["A42"])
    expect(board.locator("#preparing li")).to_have_count(0)
    expect(ticket).to_have_count(0)
    shot(board, "board.png")

    cook.click("#recall")  # recall brings it back, and the board follows
    expect(ticket).to_be_visible()
    expect(board.locator("#preparing li")).to_have_text(["A42"])
    assert kept(cook) and kept(board), "a page reloaded"
    clean(cook, board)
    for page in (cook, board):
        page.context.close()


def test_settings_show_the_apis_error_at_the_field(browser, hub):
    manager = person(browser, hub, "manager", width=1400, height=900)
    made = post_order(hub, {"channel": "pos", "ref": "s-1", "number": "S1", "items": [{"name": "小笼包", "qty": 3}]})
    manager.goto("/dashboard")
    expect(manager.locator(".kticket[data-id='%s-pastry']" % made["order"])).to_contain_text("小笼包×3")
    expect(manager.locator(".chart")).to_have_count(9)
    shot(manager, "dashboard_later.png")
    manager.goto("/settings/floor")
    shifts = manager.locator("#fields tbody tr").filter(has=manager.locator("input[value=ben]")).locator("input").nth(4)
    shifts.fill("17:00-25:00")
    manager.click("#form button[type=submit]")
    expect(manager.locator(".field-error")).to_contain_text("is not a time HH:MM")
    expect(shifts).to_have_class("invalid")
    assert shifts.get_attribute("data-path") == "waiters[1].shifts"
    shot(manager, "settings_floor.png")
    manager.goto("/settings/menu")
    cold = manager.locator("#fields tbody tr").filter(has=manager.locator("input[value=cold]")).first
    warn = cold.locator("input").nth(3)
    warn.fill("0")
    manager.click("#form button[type=submit]")
    expect(manager.locator(".field-error")).to_contain_text("must be a number")
    assert warn.get_attribute("data-path") == "stations.cold.warn_min"
    shot(manager, "settings_menu.png")
    manager.problems.clear()  # the two refused saves above were logged as failed requests
    manager.goto("/tables")
    manager.wait_for_function("() => document.querySelector('.qr[data-table=T12] img')?.naturalWidth > 0")
    shot(manager, "tables.png")
    clean(manager)
    manager.context.close()
