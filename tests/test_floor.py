"""The floor document: validation naming the bad entry, shifts, the --floor file, and
the HTTP API (GET/PUT /api/floor, /api/floor/staff, /api/metrics) on a running core."""
import json
import time

import pytest

from hub import floor
from hub.api import create_app
from hub.floor import DEMO, Floor, FloorError, on_shift, read_file, validate
from hub.store import Store
from tests.service import FLOOR, NOON, Dining, floor_doc


def bad(path, value):
    """FLOOR with the entry at path (a list of keys) set to value (None: removed)."""
    doc = floor_doc()
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize("doc,message", [
    (bad(["waiters", 2, "role"], "cook"), "waiters[2].role: must be one of server, runner, manager"),
    (bad(["waiters", 1, "pager"], "P1"), "waiters[1].pager: pager P1 is already ana's"),
    (bad(["waiters", 1, "id"], "ana"), "waiters[1].id: waiter ana is listed twice"),
    (bad(["waiters", 0, "pager"], "P 1"), "waiters[0].pager: character ' ' not allowed (A-Z a-z 0-9 - _)"),
    (bad(["waiters", 0, "sections"], ["A", "Z"]), "waiters[0].sections[1]: no section named 'Z'"),
    (bad(["waiters", 3, "shifts"], ["17:00-25:00"]), "waiters[3].shifts[0]: '25:00' is not a time HH:MM"),
    (bad(["waiters", 3, "shifts"], ["evening"]), "waiters[3].shifts[0]: must be a shift 'HH:MM-HH:MM'"),
    (bad(["waiters", 0, "active"], "yes"), "waiters[0].active: must be true or false"),
    (bad(["waiters", 4, "role"], None), "waiters[4].role: missing"),
    (bad(["waiters", 0, "phone"], "555"), "waiters[0].phone: unknown field"),
    (bad(["sections", "B"], ["T5", "T1"]), "sections.B[1]: table T1 is already in section A"),
    (bad(["sections", "B"], "T5"), "sections.B: must be a list"),
    (bad(["call_types", "water", "prio"], 12), "call_types.water.prio: must be an integer from 0 to 9"),
    (bad(["call_types", "water", "to"], "chef"), "call_types.water.to: must be one of server, runner"),
    (bad(["escalation", "steps"], [{"after": 40, "do": "shout"}]),
     "escalation.steps[0].do: must be one of repage, next, manager"),
    (bad(["escalation", "steps"], [{"after": 0, "do": "repage"}]),
     "escalation.steps[0].after: must be a number of seconds from 1 to 3600"),
    (bad(["max_tasks"], 0), "max_tasks: must be an integer from 1 to 20"),
    (bad(["waiters"], None), "waiters: missing"),
    (bad(["tips"], True), "tips: unknown field"),
    ([], "floor: must be a JSON object"),
])
def test_validation_names_the_bad_entry(doc, message):
    with pytest.raises(FloorError) as err:
        validate(doc)
    assert str(err.value).startswith(message)


def test_defaults_are_filled_in_and_demo_is_valid():
    doc = validate({"sections": {"A": ["T1"]}, "waiters": [{"id": "a", "role": "server", "pager": "P1"}]})
    assert doc["call_types"] == DEMO["call_types"] and doc["escalation"] == DEMO["escalation"]
    assert doc["waiters"][0] == {"id": "a", "name": "a", "role": "server", "pager": "P1", "sections": [],
                                 "shifts": [], "active": True}
    assert (doc["max_tasks"], doc["reminder_boost"]) == (5, 1)
    assert validate(DEMO)["waiters"][3]["role"] == "manager"
    assert floor.warnings(doc) == ["section A has no server; its calls go to whoever is least loaded"]


def test_shifts_in_local_time_cross_midnight():
    w = {"shifts": ["11:00-15:00", "22:00-02:00"]}
    hour = 3600
    assert on_shift(w, NOON) and not on_shift(w, NOON + 3 * hour)
    assert on_shift(w, NOON + 10 * hour) and on_shift(w, NOON + 13 * hour)  # 22:00, 01:00
    assert not on_shift(w, NOON + 14 * hour)  # 02:00
    assert on_shift({"shifts": []}, NOON)


def test_floor_file_errors_name_the_file_and_entry(tmp_path):
    path = tmp_path / "floor.json"
    path.write_text(json.dumps(bad(["waiters", 2, "role"], "cook")))
    with pytest.raises(FloorError, match=r"floor.json: waiters\[2\].role: must be one of"):
        read_file(path)
    path.write_text("{oops")
    with pytest.raises(FloorError, match="floor.json: not valid JSON"):
        read_file(path)
    path.write_text(json.dumps({"sections": {"大堂": ["T1"]}, "waiters": [
        {"id": "小王", "name": "王小明", "role": "server", "pager": "P1", "sections": ["大堂"]}]}),
        encoding="utf-8")
    assert read_file(path)["waiters"][0]["name"] == "王小明"


@pytest.fixture
def api(tmp_path):
    d = Dining(tmp_path / "hub.sqlite3")
    d.hub.start()  # PUT runs on the core thread, like every other change
    client = create_app(d.hub).test_client()
    yield d, client
    d.hub.stop()
    d.close()


def test_get_and_put_floor(api, tmp_path):
    dining, client = api
    dining.online("P1", "P5")
    dining.press("T1", "T1-1", "waiter")
    assert client.get("/api/floor").get_json() == validate(FLOOR)
    r = client.put("/api/floor", data=json.dumps(bad(["waiters", 2, "role"], "cook")))
    assert r.status_code == 400
    assert r.get_json() == {"error": "waiters[2].role: must be one of server, runner, manager"}
    assert client.put("/api/floor", data=b"{nope").status_code == 400
    assert client.get("/api/floor").get_json() == validate(FLOOR)  # unchanged

    dining.hub.floor.path = tmp_path / "floor.json"  # as with --floor FILE
    doc = floor_doc()
    doc["waiters"][0]["active"] = False
    r = client.put("/api/floor", data=json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["moved"] == 1 and body["floor"]["waiters"][0]["active"] is False
    assert dining.holder("T1-1") == "P5"
    assert read_file(tmp_path / "floor.json") == body["floor"]
    staff = {s["id"]: s for s in client.get("/api/floor/staff").get_json()["staff"]}
    assert staff["ana"]["on_duty"] is False and staff["eli"]["tasks"] == ["T1-1"]
    assert staff["eli"]["online"] is True and staff["ben"]["online"] is False

    other = Store(dining.path)  # the floor is kept in the database: a restart keeps it
    assert Floor(other).doc == body["floor"]
    other.close()


def test_metrics_endpoint(api):
    dining, client = api
    dining.online("P1")
    dining.press("T1", "T1-1", "waiter")
    dining.now += 12
    dining.act("P1", "T1-1", "ack")
    body = client.get("/api/metrics").get_json()
    assert body["by_waiter"]["ana"]["raise_to_ack_s"]["mean"] == 12
    assert body["since"].endswith("Z") and body["all"]["calls"] == 1
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOON + 5))  # naive: UTC
    assert client.get("/api/metrics?since=%s&until=%d" % (iso, NOON + 100)).get_json()["all"]["calls"] == 0
    assert client.get("/api/metrics?since=%sZ" % iso).get_json()["all"]["calls"] == 0
    assert client.get("/api/metrics?since=%d&until=%d" % (NOON - 5, NOON + 5)).get_json()["all"]["calls"] == 1
    r = client.get("/api/metrics?since=yesterday")
    assert r.status_code == 400 and r.get_json()["error"].startswith("since: 'yesterday' is not a time")
    assert client.get("/api/metrics?since=%d&until=%d" % (NOON, NOON)).status_code == 400
    for bad_time in ("nan", "1e30", "-5", "0001-01-01T00:00:00"):
        assert client.get("/api/metrics?since=" + bad_time).status_code == 400, bad_time
