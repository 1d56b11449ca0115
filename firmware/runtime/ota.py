# Over-the-air update: download a bundle over plain HTTP, check its SHA-256 while it
# streams into app.new/, swap it in (app -> app.old, app.new -> app), reboot. main.py
# boots the new app once on trial (marker app.try) and rolls back to app.old if that
# boot never confirms; confirm() clears the marker once the app is connected and stable.
# Bundle format: hub/firmware.py.
import asyncio
import binascii
import hashlib
import os
import sys
from runtime.log import log

APP = "app"
NEW = "app.new"
OLD = "app.old"
TRY = "app.try"
MAGIC = b"RFMB1\n"
CHUNK = 512
MAX_FILES = 200
MAX_BYTES = 1024 * 1024
CONFIRM_S = 10  # connected this long on a trial boot: the update is good
GRACE_S = 120  # not connected after this long on a trial boot: reboot, main.py rolls back

_busy = False


class OTAError(Exception):
    pass


def unload():
    """Give this module's ~6 KB of heap back once it has nothing left to do."""
    import runtime
    sys.modules.pop("runtime.ota", None)
    if "ota" in runtime.__dict__:
        del runtime.ota


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def rmtree(path):
    if not exists(path):
        return
    if os.stat(path)[0] & 0x4000:
        for name in [e[0] for e in os.ilistdir(path)]:
            rmtree(path + "/" + name)
        os.rmdir(path)
    else:
        os.remove(path)


def _mkdirs(path):
    d = ""
    for part in path.split("/")[:-1]:
        d = d + "/" + part if d else part
        if not exists(d):
            os.mkdir(d)


def _check_path(path):
    if not path or path[0] in "./" or ".." in path.split("/") or len(path) > 80:
        raise OTAError("bad path %r in bundle" % path)
    for ch in path:
        if not (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in "._/-"):
            raise OTAError("bad path %r in bundle" % path)


def parse_url(url):
    """http://host[:port]/path -> (host, port, "/path")."""
    if not url.startswith("http://"):
        raise OTAError("url: only http:// is supported")
    rest = url[7:]
    i = rest.find("/")
    hostport, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
    host, _, port = hostport.partition(":")
    try:
        port = int(port) if port else 80
    except ValueError:
        raise OTAError("url: bad port")
    if not host:
        raise OTAError("url: no host")
    return host, port, path


class _Stream:
    """The HTTP body, counted and hashed as it is read."""

    def __init__(self, r, size):
        self.r = r
        self.left = size  # None: until EOF
        self.n = 0
        self.h = hashlib.sha256()

    def _took(self, b):
        self.h.update(b)
        self.n += len(b)
        if self.left is not None:
            self.left -= len(b)
        if self.n > MAX_BYTES:
            raise OTAError("bundle over %d bytes" % MAX_BYTES)
        return b

    async def line(self):
        b = await self.r.readline()
        if not b.endswith(b"\n"):
            raise OTAError("bundle cut short")
        return self._took(b)

    async def read(self, n):
        b = await self.r.read(n)
        if not b:
            raise OTAError("bundle cut short")
        return self._took(b)

    async def rest(self):
        for _ in range(MAX_BYTES // CHUNK + 1):
            b = await self.r.read(CHUNK)
            if not b:
                return
            self._took(b)


async def _get(url):
    host, port, path = parse_url(url)
    r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    w.write(("GET %s HTTP/1.0\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode())
    await w.drain()
    status = (await r.readline()).split()
    if len(status) < 2 or status[1] != b"200":
        w.close()
        raise OTAError("HTTP %s" % (status[1].decode() if len(status) > 1 else "no answer"))
    size = None
    for _ in range(50):
        line = await r.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            size = int(v.strip())
    return r, w, size


async def _download(url, sha256, version):
    """Unpack the bundle into NEW; raise OTAError unless it is complete and its hash matches."""
    rmtree(NEW)
    os.mkdir(NEW)
    r, w, size = await _get(url)
    try:
        s = _Stream(r, size)
        if await s.line() != MAGIC:
            raise OTAError("not a firmware bundle")
        for _ in range(MAX_FILES + 1):
            head = (await s.line()).decode()
            if head == "E\n":
                break
            parts = head[:-1].split(" ", 2)
            if len(parts) != 3 or parts[0] != "F":
                raise OTAError("bad bundle entry %r" % head[:40])
            left = int(parts[1])
            _check_path(parts[2])
            _mkdirs(NEW + "/" + parts[2])
            with open(NEW + "/" + parts[2], "wb") as f:
                for _ in range(left // CHUNK + 2):
                    if left <= 0:
                        break
                    b = await s.read(min(CHUNK, left))
                    f.write(b)
                    left -= len(b)
        else:
            raise OTAError("more than %d files" % MAX_FILES)
        await s.rest()
        if s.left:
            raise OTAError("bundle cut short")
    finally:
        w.close()
    got = binascii.hexlify(s.h.digest()).decode()
    if got != sha256.lower():
        raise OTAError("sha256 mismatch: got %s" % got)
    try:
        with open(NEW + "/VERSION") as f:
            found = f.read().strip()
    except OSError:
        found = None
    if found != version:
        raise OTAError("bundle is version %r, not %r" % (found, version))
    log("ota", "%s: %d bytes, sha256 ok" % (version, s.n))


def swap():
    """Make NEW the app, keep the current one as OLD, and boot the new one on trial."""
    rmtree(OLD)
    if exists(APP):
        os.rename(APP, OLD)
    os.rename(NEW, APP)
    with open(TRY, "w") as f:
        f.write("new")


async def update(dev, p):
    """The `cmd` op ota {url, sha256, version}."""
    global _busy
    if p["version"] == dev.fw:
        log("ota", "already on %s" % p["version"])
        return
    if _busy:
        log("warn", "ota %s ignored: an update is running" % p["version"])
        return
    _busy = True
    try:
        log("ota", "downloading %s from %s" % (p["version"], p["url"]))
        await _download(p["url"], p["sha256"], p["version"])
        swap()
    except Exception as e:
        log("error", "ota %s failed, staying on %s: %s %s" % (p["version"], dev.fw, type(e).__name__, e))
        try:
            rmtree(NEW)
        except OSError:
            pass
        unload()
        return
    finally:
        _busy = False
    log("ota", "%s installed, rebooting into it" % p["version"])
    await asyncio.sleep_ms(100)
    dev.board.reboot()


async def confirm(dev):
    """On a trial boot: keep the update once connected for CONFIRM_S; reboot (and so roll
    back) if not connected within GRACE_S."""
    stable = dev.cfg.get("ota_confirm", CONFIRM_S)
    grace = dev.cfg.get("ota_grace", GRACE_S)
    up = 0
    for _ in range(grace + stable + 1):
        await asyncio.sleep(1)
        up = up + 1 if dev.connected else 0
        if up >= stable:
            try:
                os.remove(TRY)
            except OSError:
                pass
            log("ota", "%s confirmed" % dev.fw)
            unload()
            return
    log("error", "ota %s never came up: rebooting to roll back" % dev.fw)
    dev.board.reboot()
