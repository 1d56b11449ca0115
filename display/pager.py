# Pager screen, 128x64 with the 8x8 font (16 columns). Pure: draws only from
# its arguments, using fill, text, fill_rect, hline and rect.
ROWS = 4
W = 128


def age_text(s):
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%dm" % (s // 60)
    return "%dh" % (s // 3600)


def row_text(task, age):
    """'T12  water   1m': table, type, '*' when acked ('!' when paged again), age."""
    mark = "*" if task["state"] == "acked" else "!" if task["page"] > 1 else " "
    return "%-4s %-7s%s%3s" % (task["table"][:4], task["type"][:7], mark, age_text(age))


def render(fb, tasks, selected, now, since=0, online=True, battery=None):
    """Draw the queue; a task's age is its `age` plus (now - since) seconds,
    `since` being when the snapshot arrived; battery in % if known. Does not call show()."""
    fb.fill(0)
    n = len(tasks)
    fb.text("%d task%s" % (n, "" if n == 1 else "s"), 0, 0, 1)
    if battery is not None:
        fb.text("%d%%" % battery, 72, 0, 1)
    link = "ok" if online else "OFF"
    fb.text(link, W - 8 * len(link), 0, 1)
    fb.hline(0, 10, W, 1)
    if not n:
        fb.text("no tasks", 32, 32, 1)
        return
    selected = max(0, min(selected, n - 1))
    first = max(0, selected - ROWS + 1)
    extra = max(0, now - since)
    for i in range(first, min(n, first + ROWS)):
        y = 14 + (i - first) * 12
        c = 1
        if i == selected:
            fb.fill_rect(0, y - 2, W, 11, 1)
            c = 0
        fb.text(row_text(tasks[i], tasks[i]["age"] + extra), 0, y, c)
    if n > first + ROWS:
        fb.rect(W - 3, 60, 3, 3, 1)
