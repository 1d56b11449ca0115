"""The simulated restaurant the hub runs in the benchmark, rush and faults: a floor file
(sections, waiters on pagers), a menu file (stations on kitchen displays), order bodies,
and an order poster that sends POST /api/orders at a steady rate from its own threads.

Device ids match fleet.Fleet: tables T1..Tn, pagers P1..Pm, kitchen displays S1..Sk.
"""
import http.client
import itertools
import json
import os
import queue
import random
import threading
import time

DISHES = {  # station -> dishes (UTF-8 on purpose)
    "wok": ["宫保鸡丁", "麻婆豆腐", "鱼香肉丝", "扬州炒饭", "干炒牛河"],
    "grill": ["烤羊肉串", "叉烧", "烤鸭"],
    "cold": ["凉拌黄瓜", "口水鸡", "皮蛋豆腐"],
    "pastry": ["小笼包", "葱油饼", "蛋挞"],
    "drinks": ["绿茶", "酸梅汤", "豆浆"],
    "soup": ["酸辣汤", "西湖牛肉羹"],
}
MODS = ["少辣", "不要葱", "多醋", "extra spicy", "no MSG"]


def floor_doc(tables, pagers):
    """Sections of about 10 tables; pagers split into servers (one section each, the rest
    shared), runners and one manager."""
    tables_ids = ["T%d" % i for i in range(1, tables + 1)]
    n_sections = max(1, min(len(tables_ids) // 10 or 1, max(1, pagers - 2)))
    sections = {"S%02d" % (k + 1): tables_ids[k::n_sections] for k in range(n_sections)}
    runners = max(1, pagers // 6) if pagers > 2 else 0
    managers = 1 if pagers > 1 else 0
    servers = pagers - runners - managers
    names = list(sections)
    waiters = []
    for i in range(1, pagers + 1):
        if i <= servers:
            own = names[i - 1::servers] if servers else []
            waiters.append({"id": "w%d" % i, "role": "server", "pager": "P%d" % i, "sections": own})
        elif i <= servers + runners:
            waiters.append({"id": "w%d" % i, "role": "runner", "pager": "P%d" % i})
        else:
            waiters.append({"id": "w%d" % i, "role": "manager", "pager": "P%d" % i})
    return {"sections": sections, "waiters": waiters, "max_tasks": 20}


def menu_doc(stations):
    """`stations` kitchen displays S1..Sk: the last is the expo when there are 3 or more."""
    kitchen = list(DISHES)[:max(1, stations - 1 if stations >= 3 else stations)]
    spec = {}
    for i, name in enumerate(kitchen):
        spec[name] = {"label": name, "devices": ["S%d" % (i + 1)], "max_tickets": 24}
    if stations >= 3:
        spec["expo"] = {"label": "出餐", "devices": ["S%d" % stations], "expo": True, "max_tickets": 24}
    items = {dish: name for name in kitchen for dish in DISHES[name]}
    return {"stations": spec, "items": items, "default": kitchen[0]}


def write_site(workdir, tables, pagers, stations):
    """Write floor.json and menu.json; return the hub arguments that load them."""
    os.makedirs(workdir, exist_ok=True)
    args = []
    floor = os.path.join(workdir, "floor.json")
    with open(floor, "w", encoding="utf-8") as f:
        json.dump(floor_doc(tables, pagers), f, ensure_ascii=False)
    args += ["--floor", floor]
    if stations:
        menu = os.path.join(workdir, "menu.json")
        with open(menu, "w", encoding="utf-8") as f:
            json.dump(menu_doc(stations), f, ensure_ascii=False)
        args += ["--menu", menu]
    return args


def kitchen_of(menu):
    """{device id: station} of the kitchen (non-expo) displays."""
    return {dev: name for name, s in menu["stations"].items() if not s.get("expo") for dev in s["devices"]}


def order_body(n, menu, tables, rng=random):
    """A canonical order with 1-4 lines from the menu's kitchen stations."""
    dishes = [d for d, station in menu["items"].items()]
    items = []
    for k, dish in enumerate(rng.sample(dishes, rng.randint(1, min(4, len(dishes))))):
        line = {"id": str(k + 1), "name": dish, "qty": rng.randint(1, 3)}
        if rng.random() < 0.3:
            line["mods"] = [rng.choice(MODS)]
        items.append(line)
    return {"channel": "bench", "ref": "bench-%d" % n, "number": "B%d" % n,
            "table": "T%d" % rng.randint(1, max(1, tables)), "items": items}


class OrderPoster:
    """POST /api/orders at `rate` per second (open loop, Poisson) from `workers` threads.

    Each record: ref, scheduled (monotonic), t_sent, t_done, status, order id, tickets."""

    def __init__(self, http_port, menu, tables, rate, count, workers=4, seed=1, first=1):
        """first: the number of the first order (refs bench-<n> must stay unique per hub)."""
        self.port, self.menu, self.tables = http_port, menu, tables
        self.rate, self.count, self.workers = rate, count, workers
        self.records = []
        self._q = queue.Queue()
        self._rng = random.Random(seed)
        self._threads = []
        self._lock = threading.Lock()
        self._n = itertools.count(first)

    def start(self):
        t0 = time.monotonic() + 0.05
        at = t0
        for _ in range(self.count):
            n = next(self._n)
            self._q.put((at, n, order_body(n, self.menu, self.tables, self._rng)))
            at += self._rng.expovariate(self.rate)
        for _ in range(self.workers):
            self._q.put(None)
        for i in range(self.workers):
            th = threading.Thread(target=self._work, name="poster-%d" % i, daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def _work(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while True:
            item = self._q.get()
            if item is None:
                break
            at, n, body = item
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            rec = {"ref": body["ref"], "scheduled": at, "t_sent": time.monotonic(), "status": None,
                   "order": None, "tickets": []}
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            try:
                conn.request("POST", "/api/orders", data, {"Content-Type": "application/json; charset=utf-8"})
                resp = conn.getresponse()
                answer = json.loads(resp.read().decode("utf-8") or "null")
                rec["status"] = resp.status
                if isinstance(answer, dict):
                    rec["order"] = answer.get("order")
                    rec["tickets"] = answer.get("tickets") or []
                    rec["error"] = answer.get("error")
            except (OSError, ValueError, http.client.HTTPException) as e:
                rec["status"] = "error: %s" % e
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            rec["t_done"] = time.monotonic()
            with self._lock:
                self.records.append(rec)
        conn.close()

    def done(self):
        return all(not th.is_alive() for th in self._threads)


def intake_available(hub):
    """Whether this hub takes POST /api/orders (an empty body gets 400, a missing route 404/405)."""
    try:
        status, _body = hub.request("POST", "/api/orders", body={})
    except OSError:
        return False
    return status not in (404, 405)
