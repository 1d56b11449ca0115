"""The pager queue: which pager gets a task, and the ranked snapshot each pager shows.

Tasks come from sources (the call desk, device alerts, kitchen pickups), so every kind of
task competes in one ranked list per pager. A pager always receives its whole list
(retained, seq increasing), never a diff.
"""
import dataclasses
import logging

log = logging.getLogger(__name__)

MAX_TASKS = 20  # the contract's limit for one snapshot
MAX_AGE_S = 86400
MAX_PAGE = 99


@dataclasses.dataclass
class Task:
    id: str
    kind: str  # call | pickup | device
    table: str
    type: str
    prio: int  # 0-9, higher is more urgent
    raised_at: float
    state: str  # assigned | acked
    page: int
    note: str = None

    def wire(self, now):
        obj = {"id": self.id, "kind": self.kind, "table": self.table, "type": self.type,
               "prio": self.prio, "age": min(max(int(now - self.raised_at), 0), MAX_AGE_S),
               "state": self.state, "page": min(self.page, MAX_PAGE)}
        if self.note:
            obj["note"] = self.note
        return obj


def rank(tasks):
    """Most urgent first: higher prio, then waiting longer."""
    return sorted(tasks, key=lambda t: (-t.prio, t.raised_at, t.id))


class Pagers:
    def __init__(self, store, devices, outbox, floor=None):
        self.store = store
        self.devices = devices
        self.outbox = outbox
        self.floor = floor  # hub.floor.Floor: who is on duty with which pager; None: every pager
        self.sources = []  # callables: pager id -> list of Task held by that pager
        self._dirty = set()

    def tasks(self, pager):
        return rank([task for source in self.sources for task in source(pager)])

    def load(self, pager):
        return len(self.tasks(pager))

    def eligible(self, now=None):
        """{pager: waiter} of the waiters on duty whose pager is online, in floor order
        (waiter None for every online pager when there is no floor)."""
        online = self.devices.online("pager")
        if self.floor is None:
            return {pager: None for pager in online}
        online = set(online)
        return {w["pager"]: w for w in self.floor.on_duty(now) if w["pager"] in online}

    def pick(self, roles=None, exclude=(), now=None):
        """The eligible pager (of a waiter with one of `roles`, if given) holding the fewest
        tasks, or None."""
        staff = [pager for pager, w in self.eligible(now).items()
                 if pager not in exclude and (roles is None or w is None or w["role"] in roles)]
        if not staff:
            return None
        return min(staff, key=lambda pager: (self.load(pager), staff.index(pager)))

    def touch(self, pager):
        """Note that a pager's list changed; its snapshot goes out at flush()."""
        self._dirty.add(pager)

    def flush(self, now):
        dirty, self._dirty = sorted(self._dirty), set()
        for pager in dirty:
            self.publish(pager, now)

    def discard(self):
        self._dirty.clear()

    def publish(self, pager, now):
        ranked = self.tasks(pager)
        if len(ranked) > MAX_TASKS:
            log.warning("pager %s holds %d tasks; its snapshot shows the top %d", pager, len(ranked),
                        MAX_TASKS)
        self.store.run("UPDATE devices SET seq = seq + 1 WHERE kind = 'pager' AND id = ?", (pager,))
        seq = self.store.one("SELECT seq FROM devices WHERE kind = 'pager' AND id = ?", (pager,))["seq"]
        self.outbox.send("pager", pager, "tasks",
                         {"seq": seq, "tasks": [task.wire(now) for task in ranked[:MAX_TASKS]]})
        log.debug("pager %s snapshot seq %d: %s", pager, seq, " ".join(t.id for t in ranked) or "empty")
