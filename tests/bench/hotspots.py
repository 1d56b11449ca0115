"""Sample the hub process with py-spy (if installed) and summarise where its time goes.

    python tests/bench/hotspots.py summary FILE.txt   # a py-spy --format raw file

py-spy is optional (not in requirements.txt): `pip install py-spy` to get the hotspots
in `run.py --profile`; without it the benchmark says so and carries on.
"""
import collections
import os
import re
import shutil
import signal
import subprocess
import sys

_FRAME = re.compile(r"^(?P<fn>.*) \((?P<file>[^:]+):\d+\)$")


def pyspy():
    return shutil.which("py-spy") or next(
        (p for p in (os.path.join(os.path.dirname(sys.executable), "py-spy"),) if os.path.exists(p)), None)


def start(pid, seconds, out):
    """Begin sampling pid for up to `seconds` into out (raw collapsed stacks); None without
    py-spy. finish() ends it early."""
    tool = pyspy()
    if tool is None:
        return None
    return subprocess.Popen([tool, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "200",
                             "-f", "raw", "-o", out, "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(proc, timeout=30):
    """Stop sampling now (py-spy writes its file on SIGINT)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _name(frame):
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return "%s (%s)" % (m.group("fn"), path)


def _thread(frames):
    names = " ".join(frames[:12])
    if "hub/core.py" in names:
        return "hub-core"
    if "paho/mqtt" in names:
        return "paho"
    if "asyncio" in names:
        return "asyncio (embedded broker)" if "amqtt" in " ".join(frames) else "asyncio"
    if "werkzeug" in names or "socketserver" in names:
        return "http"
    return "other"


def summary(path, top=12):
    """{'samples', 'threads': {name: share}, 'self': [(share, fn)], 'inclusive': [(share, fn)]}"""
    self_c, incl_c, threads = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            n = int(n)
            frames = stack.split(";")
            total += n
            threads[_thread(frames)] += n
            names = [_name(fr) for fr in frames]
            self_c[names[-1]] += n
            for name in set(names):
                incl_c[name] += n
    if not total:
        return {"samples": 0}

    def share(counter, keep=lambda name: True):
        return [(round(c / total, 3), name) for name, c in counter.most_common() if keep(name)][:top]

    def ours(name):  # the hub's own code and the libraries on its path, not the bootstrap frames
        return any(k in name for k in ("hub/", "amqtt/", "paho/", "sqlite3", "protocol/", "json/"))

    return {"samples": total, "threads": dict((k, round(v / total, 3)) for k, v in threads.most_common()),
            "self": share(self_c), "inclusive": share(incl_c, ours)}


def format_summary(s, title):
    if not s.get("samples"):
        return "%s: no samples" % title
    lines = ["%s: %d samples; threads %s" % (title, s["samples"], ", ".join(
        "%s %.0f%%" % (k, 100 * v) for k, v in s["threads"].items()))]
    lines.append("  self time:")
    lines += ["    %5.1f%%  %s" % (100 * v, n) for v, n in s["self"][:8]]
    lines.append("  inclusive (hub, broker, paho, sqlite):")
    lines += ["    %5.1f%%  %s" % (100 * v, n) for v, n in s["inclusive"][:10]]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "summary":
        sys.exit(__doc__)
    print(format_summary(summary(sys.argv[2]), sys.argv[2]))
