# Compact asyncio MQTT 3.1.1 client: QoS 0/1 out, QoS 0/1 in, last will,
# keepalive, bounded outbox with DUP re-send, reconnect with backoff.
import asyncio
import os
import random
import struct
import time
from runtime.log import log

MAX_PAYLOAD = 16384  # larger incoming payloads are skipped (and acked)


class MQTTError(Exception):
    pass


def vlen(n):
    """Encode a remaining length (1-4 bytes)."""
    if not 0 <= n < 268435456:
        raise MQTTError("remaining length %d out of range" % n)
    out = bytearray()
    for _ in range(4):
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            break
    return bytes(out)


def ustr(s):
    """MQTT UTF-8 string: 2-byte length then the bytes."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def tls_context(ca_pem):
    """A client context that trusts only the hub's CA (PEM text; mbedtls here takes DER)."""
    import binascii
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    body = "".join(line for line in ca_pem.split("\n") if line and not line.startswith("-----"))
    ctx.load_verify_locations(cadata=binascii.a2b_base64(body))
    return ctx


class MQTT:
    """Outbox entry: [pid, topic, payload, qos, retain, sent_ms or None, dup]."""

    def __init__(self, client_id, host, port, user=None, password=None, keepalive=60,
                 will=None, outbox=32, retry=10, backoff=60, link=None, tls=None):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.will = will  # (topic, payload, qos, retain)
        self.max_q = outbox
        self.retry_ms = retry * 1000
        self.backoff_ms = backoff * 1000
        self.link = link  # async () -> bool: brings the network up
        self.tls = tls  # an ssl.SSLContext (tls_context()) for MQTT over TLS, or None
        self.q = []
        self.subs = []
        self.connected = False
        self.on_message = None  # (topic str, payload bytes)
        self.on_connect = None  # ()
        self.spool = {}  # topic bytes -> file path: such payloads stream to the file
        self._w = None
        self._pid = 0
        self._ping = False
        self._stop = False
        self._ok = False
        self._down = None
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()

    # --- API -------------------------------------------------------------
    def subscribe(self, topic, qos=1):
        """Remembered and (re)sent on every connect."""
        self.subs.append((topic, qos))
        if self.connected:
            asyncio.create_task(self._subscribe([(topic, qos)]))

    def publish(self, topic, payload, qos=0, retain=False, first=False):
        """Queue a message; QoS 1 stays queued until PUBACK. A retained message
        replaces a queued one on its topic. first=True jumps the queue and
        never evicts; otherwise a full outbox drops its oldest message."""
        if retain:
            for e in self.q:
                if e[1] == topic and e[4]:
                    self.q.remove(e)
                    break
        e = [0, topic, payload, qos, retain, None, False]
        if first:
            self.q.insert(0, e)
        else:
            if len(self.q) >= self.max_q:
                old = self.q.pop(0)
                log("warn", "outbox full (%d), dropped oldest on %s" % (self.max_q, old[1]))
            self.q.append(e)
        self._kick.set()

    async def disconnect(self):
        """Clean DISCONNECT (the broker discards the will); no reconnect."""
        self._stop = True
        if self.connected:
            try:
                await self._write(b"\xe0\x00")
            except Exception:
                pass
        if self._down:
            self._down.set()

    async def run(self):
        attempt = 0
        while not self._stop:
            self._ok = False
            try:
                if self.link is None or await self.link():
                    await self._session()
                else:
                    log("error", "network down")
            except Exception as e:
                log("error", "mqtt %s:%d: %s %s" % (self.host, self.port, type(e).__name__, e))
            if self._ok:
                attempt = 0
            if self._stop:
                break
            d = min(self.backoff_ms, 1000 << attempt)
            d = d // 2 + random.getrandbits(16) % (d // 2 + 1)
            attempt = min(attempt + 1, 16)
            log("mqtt", "reconnect in %d ms" % d)
            await asyncio.sleep_ms(d)

    # --- session -----------------------------------------------------------
    async def _session(self):
        log("mqtt", "connecting %s:%d" % (self.host, self.port))
        r, w = await asyncio.wait_for(asyncio.open_connection(self.host, self.port, self.tls), 10)
        self._w = w
        self._down = asyncio.Event()
        tasks = []
        try:
            await self._write(self._connect_pkt())
            typ, n = await asyncio.wait_for(self._head(r), 10)
            body = await r.readexactly(n)
            if typ != 0x20 or n != 2:
                raise MQTTError("expected CONNACK, got type %d" % (typ >> 4))
            if body[1]:
                raise MQTTError("connection refused, code %d" % body[1])
            self.connected = self._ok = True
            self._ping = False
            log("mqtt", "connected %s:%d as %s%s" % (self.host, self.port, self.client_id,
                                                    " over TLS" if self.tls else ""))
            if self.subs:
                await self._subscribe(self.subs)
            if self.on_connect:
                self.on_connect()
            for c in (self._reader(r), self._sender(), self._pinger()):
                tasks.append(asyncio.create_task(self._guard(c)))
            await self._down.wait()
        finally:
            for t in tasks:
                t.cancel()
            self._w = None
            for e in self.q:
                if e[5] is not None:
                    e[5] = None
                    e[6] = True  # sent before: re-send with DUP
            try:
                w.close()
                await w.wait_closed()
            except Exception:
                pass
            if self.connected:
                self.connected = False
                log("mqtt", "disconnected")

    async def _guard(self, coro):
        try:
            await coro
        except Exception as e:
            log("error", "mqtt link: %s %s" % (type(e).__name__, e))
        self._down.set()

    def _connect_pkt(self):
        flags = 0x02  # clean session
        pl = ustr(self.client_id)
        if self.will:
            t, m, q, r = self.will
            flags |= 0x04 | (q << 3) | (0x20 if r else 0)
            pl += ustr(t) + ustr(m)
        if self.user:
            flags |= 0x80
            pl += ustr(self.user)
            if self.password:
                flags |= 0x40
                pl += ustr(self.password)
        vh = b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", self.keepalive)
        return b"\x10" + vlen(len(vh) + len(pl)) + vh + pl

    async def _write(self, *parts):
        async with self._lock:
            w = self._w
            if w is None:
                raise MQTTError("not connected")
            for p in parts:
                w.write(p)
            await w.drain()

    def _next_pid(self):
        used = [e[0] for e in self.q]
        for _ in range(len(used) + 1):
            self._pid = self._pid % 65535 + 1
            if self._pid not in used:
                break
        return self._pid

    async def _subscribe(self, subs):
        body = struct.pack("!H", self._next_pid())
        for t, q in subs:
            body += ustr(t) + bytes((q,))
        await self._write(b"\x82" + vlen(len(body)) + body)
        for t, q in subs:
            log("mqtt", "subscribe %s" % t)

    async def _send_pub(self, e):
        pid, topic, payload, qos, retain = e[0], e[1], e[2], e[3], e[4]
        if qos and not pid:
            pid = e[0] = self._next_pid()
        t = ustr(topic)
        head = bytes((0x30 | (8 if e[6] else 0) | (qos << 1) | (1 if retain else 0),))
        head += vlen(len(t) + (2 if qos else 0) + len(payload)) + t
        if qos:
            head += struct.pack("!H", pid)
        e[5] = time.ticks_ms()  # set first: a failed write still re-sends with DUP
        await self._write(head, payload)
        log("mqtt", "published %s qos%d%s%s %dB" % (
            topic, qos, " pid %d" % pid if qos else "", " DUP" if e[6] else "", len(payload)))

    async def _sender(self):
        while True:
            self._kick.clear()
            now = time.ticks_ms()
            for e in list(self.q):
                if e[5] is None or (e[3] and time.ticks_diff(now, e[5]) >= self.retry_ms):
                    if e[5] is not None:
                        e[6] = True
                    await self._send_pub(e)
                    if not e[3] and e in self.q:
                        self.q.remove(e)
            try:
                await asyncio.wait_for_ms(self._kick.wait(), 1000)
            except asyncio.TimeoutError:
                pass

    async def _pinger(self):
        while True:
            await asyncio.sleep_ms(self.keepalive * 500)
            if self._ping:
                raise MQTTError("no PINGRESP within %d s: link dead" % (self.keepalive // 2))
            self._ping = True
            await self._write(b"\xc0\x00")

    # --- incoming ----------------------------------------------------------
    async def _head(self, r):
        typ = (await r.readexactly(1))[0]
        n = 0
        for i in range(4):
            c = (await r.readexactly(1))[0]
            n |= (c & 0x7F) << (7 * i)
            if not c & 0x80:
                return typ, n
        raise MQTTError("malformed remaining length")

    async def _reader(self, r):
        while True:
            typ, n = await self._head(r)
            kind = typ >> 4
            if kind == 3:
                await self._on_publish(r, typ, n)
                continue
            if n > 260:
                raise MQTTError("oversize packet type %d" % kind)
            body = await r.readexactly(n) if n else b""
            if kind == 4:
                pid = struct.unpack("!H", body)[0]
                for e in self.q:
                    if e[0] == pid and e[3]:
                        self.q.remove(e)
                        log("mqtt", "puback pid %d" % pid)
                        break
            elif kind == 13:
                self._ping = False
            elif kind == 9:
                if 0x80 in body[2:]:
                    log("error", "subscription refused by broker")
            else:
                log("warn", "unexpected packet type %d" % kind)

    async def _spool(self, r, n, path):
        """Stream n payload bytes to path (whole or not at all); return path."""
        with open(path + ".tmp", "wb") as f:
            while n > 0:
                b = await r.readexactly(min(256, n))
                f.write(b)
                n -= len(b)
        try:
            os.rename(path + ".tmp", path)
        except OSError:  # file systems that refuse to replace
            os.remove(path)
            os.rename(path + ".tmp", path)
        return path

    async def _on_publish(self, r, typ, n):
        qos = (typ >> 1) & 3
        tl = struct.unpack("!H", await r.readexactly(2))[0]
        if tl + 2 > n:
            raise MQTTError("malformed PUBLISH")
        topic = await r.readexactly(tl)
        n -= tl + 2
        pid = 0
        if qos:
            pid = struct.unpack("!H", await r.readexactly(2))[0]
            n -= 2
        if n < 0:
            raise MQTTError("malformed PUBLISH")
        payload = None
        if n > MAX_PAYLOAD:
            log("warn", "skipped %d byte payload on %s" % (n, topic))
            for _ in range(n // 512 + 1):
                if n <= 0:
                    break
                n -= len(await r.readexactly(min(512, n)))
        elif topic in self.spool:
            payload = await self._spool(r, n, self.spool[topic])
        else:
            payload = await r.readexactly(n) if n else b""
        if qos == 1:
            await self._write(b"\x40\x02" + struct.pack("!H", pid))
        elif qos == 2:
            log("warn", "QoS 2 not supported, dropped")
            return
        if payload is not None and self.on_message:
            try:
                topic = topic.decode()
            except Exception:
                log("warn", "topic is not UTF-8, dropped")
                return
            self.on_message(topic, payload)
