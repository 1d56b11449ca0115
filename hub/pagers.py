"""The pager queue: which pager gets a task, and the ranked snapshot each pager shows.

Tasks come from sources (the call desk today, kitchen pickups later), so every kind of
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
    def __init__(self, store, devices, outbox):
        self.store = store
        self.devices = devices
        self.outbox = outbox
        self.sources = []  # callables: pager id -> list of Task held by that pager
        self._dirty = set()

    def tasks(self, pager):
        return rank([task for source in self.sources for task in source(pager)])

    def pick(self):
        """The online pager holding the fewest tasks, or None."""
        online = self.devices.online("pager")
        if not online:
            return None
        return min(online, key=lambda pager: (len(self.tasks(pager)), pager))

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
