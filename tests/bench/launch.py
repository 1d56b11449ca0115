"""Start a throw-away MQTT broker on a free 127.0.0.1 port for the benchmark.

    with broker("mosquitto") as b:    # or "amqtt"
        b.host, b.port, b.version

Mosquitto runs from a generated conf in a temp dir; amqtt runs in its own process
(`amqtt_broker.py`), never inside the measuring process, so the two brokers are
measured the same way: one broker process, one client process.
"""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
BROKERS = ("amqtt", "mosquitto")

# Mosquitto 2.0 defaults are wrong for a benchmark (and for the hub):
#   max_queued_messages 1000 -- once a QoS 1 subscriber has 1000 messages queued
#     behind its in-flight window, Mosquitto SILENTLY DROPS further QoS 1 messages
#     for it (no error to anyone). A throughput run would "lose" messages that
#     the broker accepted with PUBACK. So queue far more than any run sends.
#   max_inflight_messages 20 -- per-client outgoing QoS 1 window; kept at 20, the
#     same as paho's default publish window, so both directions are symmetric.
#   set_tcp_nodelay false (default) -- Nagle holds a message queued behind a small
#     unacknowledged one (a PUBACK) until the peer's delayed ACK, up to 40 ms: with the
#     hub, press-to-pager p50 was ~44 ms instead of ~2 ms.
MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
{persistence}
max_queued_messages {max_queued}
max_inflight_messages 20
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("broker exited with code %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("broker did not listen on port %d within %.0f s" % (port, timeout))


def mosquitto_version():
    try:
        out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, timeout=5)
        first = (out.stdout or out.stderr).splitlines()[0]
        return first.split("version", 1)[1].strip()
    except Exception:
        return None


def amqtt_version():
    try:
        from importlib.metadata import version
        return version("amqtt")
    except Exception:
        return None


def version_of(name):
    return amqtt_version() if name == "amqtt" else mosquitto_version()


class Running:
    def __init__(self, name, port, proc, workdir):
        self.name, self.host, self.port = name, "127.0.0.1", port
        self.proc, self.workdir = proc, workdir
        self.version = version_of(name)

    def log_tail(self, n=20):
        try:
            with open(os.path.join(self.workdir, "broker.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None


def _popen(cmd, workdir):
    log = open(os.path.join(workdir, "broker.log"), "a")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    finally:
        log.close()


MAX_QUEUED = 100000
MOSQUITTO_DEFAULT_MAX_QUEUED = 1000


def start(name, port=None, as_hub=False, persist=False, max_queued=MAX_QUEUED):
    """Start broker `name` and wait until it accepts TCP; returns a Running.
    as_hub: amqtt as the hub embeds it (hub/broker.py), for memory comparisons.
    persist, max_queued: Mosquitto's persistence (in its work dir) and queue limit."""
    if name not in BROKERS:
        raise ValueError("unknown broker %r" % name)
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="bench-%s-" % name)
    os.chmod(workdir, 0o755)  # mosquitto drops root to user 'mosquitto'
    if name == "mosquitto":
        conf = os.path.join(workdir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(MOSQUITTO_CONF.format(
                port=port, max_queued=max_queued,
                persistence=("persistence true\npersistence_location %s/" % workdir
                             # as root it drops to user 'mosquitto', who cannot write there
                             + ("\nuser root" if os.geteuid() == 0 else "")) if persist
                else "persistence false"))
        os.chmod(conf, 0o644)
        cmd = [MOSQUITTO, "-c", conf]
    else:
        cmd = [sys.executable, os.path.join(HERE, "amqtt_broker.py"), str(port)] + (["--as-hub"] if as_hub else [])
    proc = _popen(cmd, workdir)
    run = Running(name, port, proc, workdir)
    run.cmd = cmd
    try:
        wait_port(port, proc)
    except Exception as e:
        stop(run)
        raise RuntimeError("%s: %s\n%s" % (name, e, run.log_tail())) from None
    return run


def restart(run, kill=False):
    """Stop the broker (SIGTERM, or SIGKILL: a crash) and start it again on the same port
    with the same config and work dir (so a persistent Mosquitto keeps its sessions)."""
    if run.proc.poll() is None:
        run.proc.kill() if kill else run.proc.terminate()
        run.proc.wait(10)
    run.proc = _popen(run.cmd, run.workdir)
    wait_port(run.port, run.proc)
    return run


def stop(run):
    if run.proc.poll() is None:
        run.proc.terminate()
        try:
            run.proc.wait(5)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait(5)
    shutil.rmtree(run.workdir, ignore_errors=True)


@contextlib.contextmanager
def broker(name, port=None, as_hub=False, **options):
    run = start(name, port, as_hub, **options)
    try:
        yield run
    finally:
        stop(run)
