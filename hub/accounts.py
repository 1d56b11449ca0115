"""Staff logins for the web pages: name, role (manager or staff), password, and the floor
waiter a login stands for (whose pager a phone acts as).

Demo mode (the hub without --auth) also lets in `manager`, `staff` and every floor waiter's id,
each with the password `demo`; with --auth only real accounts exist. Passwords are kept as
scrypt hashes; changing one (or the role) ends that account's sessions.

    python -m hub.accounts add dora --role manager --waiter dora   # asks for the password
    python -m hub.accounts list
    python -m hub.accounts remove dora
"""
import argparse
import getpass
import hashlib
import hmac
import pathlib
import secrets
import sys
import time

from hub import store as _store

SCHEMA = """
CREATE TABLE IF NOT EXISTS web_accounts (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL,               -- manager | staff
    waiter     TEXT,                        -- floor waiter id: a phone acts as their pager
    hash       TEXT NOT NULL,               -- scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>
    gen        INTEGER NOT NULL DEFAULT 1,  -- sessions of an older generation are over
    created_at REAL NOT NULL
);
"""
_store.EXTRA_SCHEMAS.append(SCHEMA)

ROLES = ("manager", "staff")
DEMO_PASSWORD = "demo"
DEMO_NAMES = {"manager": "manager", "staff": "staff"}
SCRYPT = (2 ** 14, 8, 1)
MIN_PASSWORD = 8
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_."


class AccountError(ValueError):
    """A bad account field; `field` names it."""

    def __init__(self, field, reason):
        super().__init__("%s: %s" % (field, reason))
        self.field = field
        self.reason = reason


def hash_password(password):
    salt = secrets.token_bytes(16)
    n, r, p = SCRYPT
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return "scrypt$%d$%d$%d$%s$%s" % (n, r, p, salt.hex(), digest.hex())


def check_password(password, stored):
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return scheme == "scrypt" and hmac.compare_digest(got.hex(), digest)


def check_name(name):
    if not isinstance(name, str) or not 1 <= len(name) <= 32 or any(c not in NAME_CHARS for c in name):
        raise AccountError("name", "1-32 of a-z 0-9 - _ .")
    return name


def check_fields(name, role, password, waiter, floor, new):
    check_name(name)
    if role not in ROLES:
        raise AccountError("role", "must be one of %s" % ", ".join(ROLES))
    if password is not None or new:
        if not isinstance(password, str) or len(password) < MIN_PASSWORD:
            raise AccountError("password", "at least %d characters" % MIN_PASSWORD)
    if waiter:
        ids = [w["id"] for w in floor.doc["waiters"]]
        if waiter not in ids:
            raise AccountError("waiter", "no waiter %r on the floor (%s)" % (waiter, ", ".join(ids)))


class Accounts:
    def __init__(self, store, floor):
        self.store = store
        self.floor = floor

    def get(self, name):
        return self.store.one("SELECT * FROM web_accounts WHERE name = ?", (name,))

    def list(self):
        return [{"name": r["name"], "role": r["role"], "waiter": r["waiter"]}
                for r in self.store.query("SELECT * FROM web_accounts ORDER BY name")]

    def save(self, now, name, role, password=None, waiter=None):
        """Create or change an account (run in the core); returns True if it is new."""
        old = self.get(name)
        check_fields(name, role, password, waiter, self.floor, old is None)
        if old is None:
            self.store.insert("web_accounts", {"name": name, "role": role, "waiter": waiter or None,
                                               "hash": hash_password(password), "created_at": now})
            return True
        fields = {"role": role, "waiter": waiter or None}
        if password is not None:
            fields["hash"] = hash_password(password)
        if password is not None or role != old["role"]:
            fields["gen"] = old["gen"] + 1
        self.store.update("web_accounts", {"name": name}, fields)
        return False

    def remove(self, now, name):
        return self.store.run("DELETE FROM web_accounts WHERE name = ?", (name,)) > 0

    # --- logins -------------------------------------------------------------
    def demo_user(self, name):
        """The demo login of that name (demo mode only), or None."""
        if name in DEMO_NAMES:
            return {"name": name, "role": DEMO_NAMES[name], "waiter": None, "gen": 0}
        for w in self.floor.doc["waiters"]:
            if w["id"] == name:
                return {"name": name, "role": "manager" if w["role"] == "manager" else "staff",
                        "waiter": name, "gen": 0}
        return None

    def login(self, name, password, demo):
        """The user dict if the password is right, else None."""
        row = self.get(name) if isinstance(name, str) else None
        if row is not None:
            if check_password(password, row["hash"]):
                return {"name": row["name"], "role": row["role"], "waiter": row["waiter"], "gen": row["gen"]}
            return None
        if demo and hmac.compare_digest(password.encode("utf-8"), DEMO_PASSWORD.encode()):
            return self.demo_user(name)
        return None

    def current(self, name, gen, demo):
        """The user a session names, if it still holds (same generation), else None."""
        row = self.get(name)
        if row is not None:
            if row["gen"] != gen:
                return None
            return {"name": row["name"], "role": row["role"], "waiter": row["waiter"], "gen": row["gen"]}
        if demo and gen == 0:
            return self.demo_user(name)
        return None


def main(argv=None):
    from hub.__main__ import DB_NAME
    from hub.floor import Floor
    from hub.store import Store

    parser = argparse.ArgumentParser(prog="python -m hub.accounts",
                                     description="Staff logins of the hub's web pages (manager or staff).")
    parser.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path("data"),
                        help="the hub's data directory (default ./data)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="create an account or change its role, waiter or password")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="staff", help="default staff")
    add.add_argument("--waiter", help="floor waiter id this login stands for (a phone acts as their pager)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    sub.add_parser("list", help="list the accounts")
    rm = sub.add_parser("remove", help="remove an account (its sessions end)")
    rm.add_argument("name")
    args = parser.parse_args(argv)
    path = args.data_dir / DB_NAME
    if not path.exists():
        parser.error("no hub database at %s (start the hub once, or pass --data-dir)" % path)
    store = Store(path)
    accounts = Accounts(store, Floor(store))
    try:
        if args.cmd == "list":
            for a in accounts.list():
                print("%-20s %-8s %s" % (a["name"], a["role"], a["waiter"] or "-"))
            return 0
        if args.cmd == "remove":
            with store.transaction():
                gone = accounts.remove(time.time(), args.name)
            print("removed %s" % args.name if gone else "no account %s" % args.name)
            return 0 if gone else 1
        old = accounts.get(args.name)
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("password for %s: " % args.name)
            if password != getpass.getpass("again: "):
                print("the passwords differ", file=sys.stderr)
                return 1
        if old is not None and not password:
            password = None  # keep the old one
        with store.transaction():
            new = accounts.save(time.time(), args.name, args.role, password, args.waiter)
        print("%s %s (%s)" % ("created" if new else "changed", args.name, args.role))
        return 0
    except AccountError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
