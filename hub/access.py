"""Who may use the broker: each device's own MQTT identity, the hub's superuser, and
the broker auth files generated from the device registry for both brokers.

A device's MQTT username is "<kind>/<id>" (e.g. "table/T12"), which is exactly its
topic namespace. Both brokers get the same exact per-user topic lists: a device may
publish only its own kind's up messages on its own topics and subscribe only to its own
down topics; the hub ("hub") and a person's tools ("admin", password in admin.secret) may
do anything under rfm/. A device may connect only with its own client id (its username, or
the "rfm-<site>-<kind>-<id>" its firmware uses), so no one can take over another device's
session. A flooding device can be quarantined: its publish rights go until it is quiet.

    python -m hub.access --data-dir data     # (re)write the files, e.g. before starting Mosquitto
"""
import argparse
import base64
import collections
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import secrets
import shlex
import subprocess
import sys
import threading

from amqtt.contexts import Action
from amqtt.plugins.authentication import FileAuthPlugin
from amqtt.plugins.base import BaseTopicPlugin
from pwdlib.hashers.argon2 import Argon2Hasher

import protocol
from hub.bouncer import Bouncer

log = logging.getLogger(__name__)

HUB_USER = "hub"
ADMIN_USER = "admin"  # a person's tools (mosquitto_sub, tests): everything under rfm/, like the hub
SUPERUSERS = (HUB_USER, ADMIN_USER)
AUTH_DIR = "auth"
# Device passwords are 144 random bits, so the hash need not be slow; a cheap argon2
# keeps a whole floor reconnecting at once from stalling the embedded broker.
_ARGON2 = Argon2Hasher(time_cost=2, memory_cost=4096, parallelism=1)
MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's PBKDF2-SHA512 ($7$) default
# Largest MQTT packet either broker accepts: the biggest message, its topic and headers.
MAX_PACKET = max(spec[4] for spec in protocol.MESSAGES.values()) + 512

FILES = {"amqtt_passwd": "amqtt.passwd", "amqtt_acl": "amqtt-acl.json",
         "mosquitto_passwd": "mosquitto.passwd", "mosquitto_acl": "mosquitto.acl",
         "mosquitto_conf": "mosquitto.conf", "hub_secret": "hub.secret", "admin_token": "admin.token",
         "admin_secret": "admin.secret"}


def username(kind, device):
    return "%s/%s" % (kind, device)


def new_password():
    return secrets.token_urlsafe(18)


def amqtt_hash(password):
    return _ARGON2.hash(password)


def mosquitto_hash(password, salt=None):
    """The `$7$` PBKDF2-SHA512 line format that mosquitto_passwd writes."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, MOSQUITTO_ITERATIONS)
    return "$7$%d$%s$%s" % (MOSQUITTO_ITERATIONS, base64.b64encode(salt).decode(),
                            base64.b64encode(digest).decode())


def client_ids(site, user):
    """The client ids a device may connect with: its username, or the firmware's own."""
    kind, _, device = user.partition("/")
    return user, "rfm-%s-%s-%s" % (site, kind, device)  # as firmware/runtime/device.py names it


def owner(topic):
    """The username whose topic this is ("table/T1"), or None for any other topic."""
    try:
        _site, kind, device, _message = protocol.parse_topic(topic)
    except protocol.ProtocolError:
        return None
    return username(kind, device)


def up_messages(kind):
    return [m for m, spec in protocol.MESSAGES.items() if spec[1] == "up" and kind in spec[0]]


def device_topics(site, kind, device):
    """(topics it may publish, topics it may subscribe to)."""
    pub = [protocol.topic(site, kind, device, m) for m in up_messages(kind)]
    sub = [protocol.topic(site, kind, device, m) for m in protocol.SUBSCRIBES[kind]]
    return pub, sub


def _write(path, text, mode=0o600):
    tmp = "%s.tmp" % path
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _secret(path, make):
    """Read a secret file, creating it (0600) on first use."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = make()
        _write(path, value + "\n")
        return value


class Access:
    """The auth files of one hub, in <data-dir>/auth/."""

    def __init__(self, data_dir, site, reload_cmd=None, listener=(None, 1883), tls=None):
        """listener: (bind address or None for every interface, port) of Mosquitto's device
        listener; tls: {"cafile", "certfile", "keyfile"} to make that listener TLS."""
        self.dir = pathlib.Path(data_dir) / AUTH_DIR
        self.site = site
        self.reload_cmd = reload_cmd
        self.listener = listener
        self.tls = tls
        self.quarantined = set()  # usernames of flooding devices: no publishing for now
        self._lock = threading.Lock()  # writes come from HTTP (registrations) and the core (floods)
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, name):
        return self.dir / FILES[name]

    def hub_identity(self):
        """(username, password) of the hub's own superuser client."""
        return HUB_USER, _secret(self.path("hub_secret"), new_password)

    def admin_identity(self):
        """(username, password) of the MQTT superuser for a person's tools."""
        return ADMIN_USER, _secret(self.path("admin_secret"), new_password)

    def admin_token(self):
        """Bearer token that write requests to the HTTP API need when auth is on."""
        return _secret(self.path("admin_token"), lambda: secrets.token_urlsafe(24))

    def amqtt_plugins(self, rate=0, burst=0):
        """The embedded broker's auth and topic plugins, reading the generated files; rate and
        burst: each device's publish limit at the broker (0: none)."""
        return {"hub.access.DevicePasswords": {"password_file": str(self.path("amqtt_passwd"))},
                "hub.access.DeviceTopics": {"acl_file": str(self.path("amqtt_acl")), "rate": rate, "burst": burst}}

    def client_id_ok(self, user, client_id):
        return user in SUPERUSERS or client_id in client_ids(self.site, user or "")

    def quarantine(self, user, on, registry):
        """Take away (on) or give back a flooding device's right to publish, on either broker:
        its messages then end at the broker, before they cost the hub anything."""
        with self._lock:
            (self.quarantined.add if on else self.quarantined.discard)(user)
        log.warning("device %s %s", user, "quarantined: the broker drops what it publishes" if on else
                    "may publish again")
        self.write(registry)

    def _topics(self, row):
        pub, sub = device_topics(self.site, row["kind"], row["id"])
        return ([] if username(row["kind"], row["id"]) in self.quarantined else pub), sub

    def write(self, registry):
        """Regenerate every file from the registry rows (kind, id, amqtt_hash, mosquitto_hash)."""
        with self._lock:
            self._write_all(registry)
        self.reload()

    def _write_all(self, registry):
        supers = [self.hub_identity(), self.admin_identity()]
        self.admin_token()
        rows = sorted(registry, key=lambda r: (r["kind"], r["id"]))
        amqtt = ["# generated by the hub from its device registry; do not edit"]
        amqtt += ["%s:%s" % (user, amqtt_hash(password)) for user, password in supers]
        mosq = ["%s:%s" % (user, mosquitto_hash(password)) for user, password in supers]
        publish = {user: ["#"] for user in SUPERUSERS}
        subscribe = {user: ["#"] for user in SUPERUSERS}
        for r in rows:
            name = username(r["kind"], r["id"])
            amqtt.append("%s:%s" % (name, r["amqtt_hash"]))
            mosq.append("%s:%s" % (name, r["mosquitto_hash"]))
            publish[name], subscribe[name] = self._topics(r)
        _write(self.path("amqtt_passwd"), "\n".join(amqtt) + "\n")
        _write(self.path("amqtt_acl"), json.dumps({"publish-acl": publish, "subscribe-acl": subscribe},
                                                  indent=1) + "\n")
        _write(self.path("mosquitto_passwd"), "\n".join(mosq) + "\n", 0o644)  # Mosquitto runs as its own user
        _write(self.path("mosquitto_acl"), self._mosquitto_acl(rows), 0o644)
        _write(self.path("mosquitto_conf"), self._mosquitto_conf(), 0o644)
        log.info("broker auth files written for %d devices in %s", len(rows), self.dir)

    def _mosquitto_conf(self):
        # The listener is defined here: listener options in an included file would apply to
        # Mosquitto's default listener (port 1883, every interface), not to the main file's.
        bind, port = self.listener
        lines = ["# generated by the hub: `include_dir %s` in mosquitto.conf" % self.dir.resolve(),
                 "# (which must not define a listener on port %d itself)" % port,
                 "per_listener_settings false", "allow_anonymous false",
                 "password_file %s" % self.path("mosquitto_passwd").resolve(),
                 "acl_file %s" % self.path("mosquitto_acl").resolve(),
                 "max_packet_size %d" % MAX_PACKET,
                 "listener %d%s" % (port, " " + bind if bind else ""),
                 "use_username_as_clientid true"]
        if self.tls:
            lines += ["%s %s" % (key, pathlib.Path(self.tls[key]).resolve())
                      for key in ("cafile", "certfile", "keyfile")]
        return "\n".join(lines) + "\n"

    def _mosquitto_acl(self, rows):
        # The same exact lists as amqtt's: a per-kind `%u` pattern cannot exist, since the
        # kind is part of the username. A message of another kind never reaches the hub.
        lines = ["# generated by the hub; a device's username is <kind>/<id>"]
        for user in SUPERUSERS:
            lines += ["user %s" % user, "topic readwrite %s/#" % protocol.ROOT.split("/")[0]]
        for r in rows:
            pub, sub = self._topics(r)
            lines += ["", "user %s" % username(r["kind"], r["id"])]
            lines += ["topic write %s" % t for t in pub] + ["topic read %s" % t for t in sub]
        return "\n".join(lines) + "\n"

    def reload(self):
        """Tell an external broker to re-read the files (e.g. `systemctl reload mosquitto`)."""
        if not self.reload_cmd:
            return
        try:
            done = subprocess.run(shlex.split(self.reload_cmd), capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("broker reload %r failed: %s", self.reload_cmd, exc)
            return
        if done.returncode:
            log.error("broker reload %r exited %d: %s", self.reload_cmd, done.returncode, done.stderr.strip())


# --- amqtt plugins, re-reading the hub's files when they change ---------------------
def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class DevicePasswords(FileAuthPlugin):
    """amqtt's FileAuthPlugin; picks up devices registered while the broker runs."""

    def __init__(self, context):
        super().__init__(context)
        self._stamp = _stamp(self._get_config_option("password-file"))

    async def authenticate(self, *, session):
        stamp = _stamp(self._get_config_option("password-file"))
        if stamp != self._stamp:
            self._users = {}
            self._read_password_file()
            self._stamp = stamp
        return await super().authenticate(session=session)


class DeviceTopics(BaseTopicPlugin):
    """The per-user topic lists from a JSON file ("publish-acl", "subscribe-acl"), re-read
    when it changes. Exact topics only (no wildcard matching), each of which must also
    belong to the user asking; "#" is the superusers'. A device publishing over `rate`
    messages a second (after `burst`) has the excess dropped here, before amqtt spends
    anything on delivering it."""

    @dataclasses.dataclass
    class Config:
        acl_file: str = ""
        rate: float = 0
        burst: int = 0

    def __init__(self, context):
        super().__init__(context)
        self._acl = {}
        self._stamp = None
        self._refused = collections.Counter()
        self._bouncer = Bouncer(self.config.rate, self.config.burst, where="broker")
        self._load()

    def _load(self):
        stamp = _stamp(self.config.acl_file)
        if stamp == self._stamp:
            return
        try:
            with open(self.config.acl_file, encoding="utf-8") as f:
                self._acl = json.load(f)
        except (OSError, ValueError) as exc:
            log.error("topic ACL %s unreadable (%s): every topic refused", self.config.acl_file, exc)
            self._acl = {}
        self._stamp = stamp

    async def topic_filtering(self, *, session=None, topic=None, action=None):
        self._load()
        user = session.username if session else None
        allowed = self._acl.get("publish-acl" if action == Action.PUBLISH else "subscribe-acl", {}).get(user, ())
        if "#" in allowed:
            return True
        ok = topic in allowed and owner(topic) == user
        if not ok and action != Action.RECEIVE:
            if len(self._refused) > 1000:
                self._refused.clear()
            self._refused[(user, topic)] += 1
            if self._refused[(user, topic)] in (1, 100, 10000):  # a flood does not flood the log
                log.warning("broker refused %s to %s on %s (%d times)", user, action, topic,
                            self._refused[(user, topic)])
        if ok and action == Action.PUBLISH:
            ok = self._bouncer.admit(*user.split("/", 1)) is None
        return ok


def main(argv=None):
    from hub.fleet import Registry
    from hub.store import Store

    ap = argparse.ArgumentParser(prog="python -m hub.access", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path("data"),
                    help="the hub's data directory (default ./data); files go to <data-dir>/auth")
    ap.add_argument("--site", help="site id (default: the one the database holds, else demo)")
    ap.add_argument("--port", type=int, default=1883, help="port of Mosquitto's device listener (default 1883)")
    ap.add_argument("--bind", help="address it listens on (default: every interface)")
    ap.add_argument("--tls", action="store_true",
                    help="make that listener TLS, with the hub's local CA (made if missing; see python -m hub.certs)")
    a = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    a.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(a.data_dir / "hub.sqlite3")
    try:
        site = store.setting("site", a.site or "demo")
        if a.site and a.site != site:
            ap.error("%s holds site %r, not %r" % (store.path, site, a.site))
        tls = None
        if a.tls:
            from hub.certs import Certs, lan_hosts
            certs = Certs(a.data_dir)
            certs.ensure(lan_hosts() + ([a.bind] if a.bind else []), site)
            tls = certs.files()
        access = Access(a.data_dir, site, listener=(a.bind, a.port), tls=tls)
        access.write(Registry(store).credentials())
    finally:
        store.close()
    print("Mosquitto: `include_dir %s` in mosquitto.conf loads %s, which defines the device listener on port %d "
          "(mosquitto.conf must not); the hub logs in as %r with the password in %s"
          % (access.dir.resolve(), FILES["mosquitto_conf"], a.port, HUB_USER, access.path("hub_secret")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
