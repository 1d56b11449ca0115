"""The channel adapters (hub/channels.py) through POST /api/channels/<name>, in-process.

Every delivery is signed by tests/order_channels.py the way the channel documents it, so a
hub that verified some other way would fail here. None of the three channels' documents
publishes a complete example vector (secret, body and signature together): Deliveroo's
"Securing webhooks" shows headers without the secret and body behind them."""
import base64
import hashlib
import hmac
import json
import time

import pytest

from tests import order_channels as ch
from tests.test_orders import Kitchen

SECRETS = {"toast": "toast-secret-1", "deliveroo": "roo-secret-2", "shopify": "shp-secret-3", "api": "api-secret-4"}


@pytest.fixture
def kitchen(tmp_path):
    k = Kitchen(tmp_path / "hub.sqlite3", secrets=SECRETS, now=time.time())
    k.online("kds", "wok", "cold", "pastry", "expo")
    yield k
    k.close()


def send(kitchen, delivery, code):
    path, body, headers = delivery
    resp = kitchen.http.post(path, data=body, headers=headers)
    assert resp.status_code == code, resp.json
    return resp.json


def nothing_written(kitchen):
    assert kitchen.get("/api/orders")["orders"] == [] and kitchen.sent("order") == []


# --- toast ---------------------------------------------------------------------
def toast(selections, **kw):
    return ch.toast(SECRETS["toast"], "f6d98b95-2816-4f54-b1ab-7a5d71e83769", selections, **kw)


KUNG_PAO = ("sel-1", "宫保鸡丁", 2, ["少辣"], False)
CUCUMBER = ("sel-2", "凉拌黄瓜", 1.0, [], False)


def test_toast_order_updated_makes_one_order_kept_under_its_guid(kitchen):
    t0 = time.time()
    got = send(kitchen, toast([KUNG_PAO, CUCUMBER], modified=t0), 201)
    assert (got["result"], got["channel"], got["ref"]) == ("created", "toast", "f6d98b95-2816-4f54-b1ab-7a5d71e83769")
    wok = kitchen.snap("wok")[0]["O1-wok"]
    assert (wok["ch"], wok["num"], wok["items"]) == ("toast", "12", [{"name": "宫保鸡丁", "qty": 2, "mods": ["少辣"]}])
    # Toast sends the whole order again on every update (and may retry): still one order
    assert send(kitchen, toast([KUNG_PAO, CUCUMBER], modified=t0), 200)["result"] == "duplicate"
    assert len(kitchen.get("/api/orders")["orders"]) == 1
    # the server voids the cucumber and adds mapo tofu
    got = send(kitchen, toast([KUNG_PAO, CUCUMBER[:4] + (True,), ("sel-3", "麻婆豆腐", 1, [], False)],
                              modified=t0 + 60), 200)
    assert got["result"] == "updated" and got["changed"] == ["sel-2", "sel-3"]
    assert kitchen.snap("cold")[0] == {}
    assert [i["name"] for i in kitchen.snap("wok")[0]["O1-wok"]["items"]] == ["宫保鸡丁", "麻婆豆腐"]
    # an older update arriving late changes nothing
    assert send(kitchen, toast([KUNG_PAO], modified=t0 + 30), 200)["result"] == "stale"
    # the whole order voided
    got = send(kitchen, toast([KUNG_PAO], voided=True, modified=t0 + 90), 200)
    assert got["status"] == "void" and kitchen.snap("wok")[0] == {}


def test_toast_forged_or_replayed_is_401_and_writes_nothing(kitchen):
    path, body, headers = toast([KUNG_PAO])
    forged = dict(headers, **{"Toast-Signature": ch.toast("wrong-secret", "g", [KUNG_PAO])[2]["Toast-Signature"]})
    got = send(kitchen, (path, body, forged), 401)
    assert got["error"] == "Toast-Signature: does not match the body (wrong secret, or the body was altered)"
    tampered = body.replace("宫保鸡丁".encode(), "麻婆豆腐".encode())
    assert "does not match" in send(kitchen, (path, tampered, headers), 401)["error"]
    del forged["Toast-Signature"]
    assert send(kitchen, (path, body, forged), 401)["error"] == "Toast-Signature: missing header"
    old = toast([KUNG_PAO], at=time.time() - 3600)  # correctly signed, an hour old
    assert "outside the 1200 s replay window" in send(kitchen, old, 401)["error"]
    nothing_written(kitchen)


def test_toast_bad_bodies_name_the_field(kitchen):
    path, body, headers = toast([("sel-1", "宫保鸡丁", "two", [], False)])
    got = send(kitchen, (path, body, headers), 400)
    assert got["field"] == "details.order.checks[0].selections[0].quantity"
    msg = json.loads(toast([KUNG_PAO])[1])
    del msg["details"]["order"]["checks"][0]["selections"][0]["displayName"]
    body = json.dumps(msg, ensure_ascii=False).encode()
    sig = base64.b64encode(hmac.new(SECRETS["toast"].encode(), body + msg["timestamp"].encode(),
                                       hashlib.sha256).digest()).decode()
    got = send(kitchen, (path, body, dict(headers, **{"Toast-Signature": sig})), 400)
    assert got["error"] == "details.order.checks[0].selections[0].displayName: missing"
    nothing_written(kitchen)


def test_toast_events_without_food_are_acknowledged_and_ignored(kitchen):
    got = send(kitchen, toast([]), 200)
    assert got["result"] == "ignored" and "no selections" in got["why"]
    nothing_written(kitchen)


# --- deliveroo -----------------------------------------------------------------
def roo(**kw):
    items = kw.pop("items", [("宫保鸡丁", 1, ["加花生"]), ("凉拌黄瓜", 2, [])])
    return ch.deliveroo(SECRETS["deliveroo"], "gb:556dd9ec-0e40-48bd-97dc-63f11a47ce65", items, **kw)


def test_deliveroo_order_new_and_cancel(kitchen):
    got = send(kitchen, roo(notes="对虾过敏"), 201)
    assert got["ref"] == "gb:556dd9ec-0e40-48bd-97dc-63f11a47ce65"
    wok = kitchen.snap("wok")[0]["O1-wok"]
    assert (wok["num"], wok["allergy"], wok["note"]) == ("7458", "对虾过敏", "NO CUTLERY")
    assert wok["items"] == [{"name": "宫保鸡丁", "qty": 1, "mods": ["加花生"]}]
    # the same event again (Deliveroo retries) and a status update: one order
    assert send(kitchen, roo(notes="对虾过敏"), 200)["result"] == "duplicate"
    assert send(kitchen, roo(notes="对虾过敏", event="order.status_update", status="accepted"), 200)["result"] \
        == "duplicate"
    got = send(kitchen, roo(notes="对虾过敏", event="order.status_update", status="canceled"), 200)
    assert got["status"] == "void" and kitchen.snap("wok")[0] == {} and kitchen.snap("cold")[0] == {}


def test_deliveroo_forged_is_401(kitchen):
    path, body, headers = roo()
    got = send(kitchen, (path, body, dict(headers, **{"X-Deliveroo-Sequence-Guid": "999"})), 401)
    assert got["error"].startswith("X-Deliveroo-Hmac-Sha256: does not match")
    other = ch.deliveroo("not-the-secret", "gb:1", [("宫保鸡丁", 1, [])])
    assert send(kitchen, other, 401)["error"].startswith("X-Deliveroo-Hmac-Sha256: does not match")
    nothing_written(kitchen)


def test_deliveroo_bad_item_names_the_field(kitchen):
    got = send(kitchen, roo(items=[("宫保鸡丁", -1, [])]), 400)
    assert got["error"] == "body.order.items[0].quantity: must be a number of at least 0"
    got = send(kitchen, roo(items=[]), 400)
    assert got["error"] == "items: must be a non-empty list of order lines"
    nothing_written(kitchen)


# --- shopify -------------------------------------------------------------------
def shop(lines=None, **kw):
    lines = lines or [(111, "生日蛋糕", 1, "8寸", None), (112, "蛋挞", 6, None, None)]
    return ch.shopify(SECRETS["shopify"], 450789469, lines, **kw)


def test_shopify_create_edit_and_cancel(kitchen):
    t0 = time.time() - 100
    got = send(kitchen, shop(updated=t0, note="写字：生日快乐", allergy="坚果过敏"), 201)
    assert (got["ref"], got["order"]) == ("450789469", "O1")
    pastry = kitchen.snap("pastry")[0]["O1-pastry"]
    assert (pastry["num"], pastry["note"], pastry["allergy"]) == ("#1001", "写字：生日快乐", "坚果过敏")
    assert pastry["items"] == [{"name": "生日蛋糕", "qty": 1, "mods": ["8寸"]}, {"name": "蛋挞", "qty": 6}]
    # an order edit removes the tarts: current_quantity 0
    got = send(kitchen, shop([(111, "生日蛋糕", 1, "8寸", 1), (112, "蛋挞", 6, None, 0)], topic="orders/updated",
                             updated=t0 + 50, note="写字：生日快乐", allergy="坚果过敏"), 200)
    assert got["changed"] == ["112"]
    items = kitchen.snap("pastry")[0]["O1-pastry"]["items"]
    assert items[1] == {"name": "蛋挞", "qty": 1, "void": True, "changed": True}
    got = send(kitchen, shop(topic="orders/cancelled", cancelled=True, updated=t0 + 80), 200)
    assert got["status"] == "void" and kitchen.snap("pastry")[0] == {}


def test_shopify_forged_ignored_and_bad(kitchen):
    path, body, headers = shop()
    got = send(kitchen, (path, body, dict(headers, **{"X-Shopify-Hmac-Sha256": "AAAA"})), 401)
    assert got["error"].startswith("X-Shopify-Hmac-Sha256: does not match")
    got = send(kitchen, (path, body, dict(headers, **{"X-Shopify-Topic": "products/update"})), 200)
    assert got["result"] == "ignored"
    order = json.loads(body)
    del order["line_items"]
    bad = json.dumps(order).encode()
    sig = base64.b64encode(hmac.new(SECRETS["shopify"].encode(), bad, hashlib.sha256).digest()).decode()
    got = send(kitchen, (path, bad, dict(headers, **{"X-Shopify-Hmac-Sha256": sig})), 400)
    assert got["error"] == "line_items: missing"
    nothing_written(kitchen)


# --- routing of requests ---------------------------------------------------------
def test_unknown_or_unconfigured_channels(tmp_path):
    k = Kitchen(tmp_path / "hub.sqlite3", secrets={})
    try:
        resp = k.http.post("/api/channels/ubereats", data=b"{}")
        assert resp.status_code == 404 and "not one of deliveroo, shopify, toast" in resp.json["error"]
        path, body, headers = shop()
        resp = k.http.post(path, data=body, headers=headers)
        assert resp.status_code == 403 and "--channel-secret shopify=SECRET" in resp.json["error"]
        nothing_written(k)
    finally:
        k.close()


def test_the_canonical_api_needs_a_signature_when_it_has_a_secret(kitchen):
    body = json.dumps({"channel": "miniapp", "ref": "wx-20240501-0001", "number": "A12",
                       "items": [{"name": "扬州炒饭", "qty": 1}]}, ensure_ascii=False).encode()
    resp = kitchen.http.post("/api/orders", data=body)
    assert resp.status_code == 401 and resp.json["error"] == "X-RFM-Timestamp: missing header"
    stamp = str(int(time.time()))
    sig = "sha256=" + hmac.new(SECRETS["api"].encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    resp = kitchen.http.post("/api/orders", data=body, headers={"X-RFM-Timestamp": stamp, "X-RFM-Signature": sig})
    assert resp.status_code == 201 and resp.json["ref"] == "wx-20240501-0001"
