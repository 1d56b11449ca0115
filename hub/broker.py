"""The embedded MQTT broker (amqtt), for a hub that runs without Mosquitto.

amqtt keeps retained messages in memory only and never enforces keepalive, so the
hub re-sends its snapshots after a restart and supervises heartbeats itself.

Hardening amqtt 0.12.1 lacks: a packet over MAX_PACKET bytes closes the connection
(amqtt would read any size into memory), as does a device sending packets faster than any
device could mean to, or no CONNECT within CONNECT_TIMEOUT_S; and each CONNECT's
credentials and client id are checked before amqtt touches a session (amqtt drops the
subscriptions of the session a CONNECT names, and overwrites its username, before it
authenticates the CONNECT).
"""
import asyncio
import logging
import time

from amqtt.adapters import BufferReader, ReaderAdapter
from amqtt.broker import Broker
from amqtt.errors import MQTTError
from amqtt.mqtt.connack import BAD_USERNAME_PASSWORD, IDENTIFIER_REJECTED, ConnackPacket
from amqtt.mqtt.connect import ConnectPacket
from amqtt.session import Session

from hub.access import MAX_PACKET

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10


def config(host, port, plugins=None, tls=None):
    """plugins: auth and topic plugins (hub.access, with --auth); default anonymous demo mode.
    tls: (certfile, keyfile) for an MQTT over TLS listener."""
    listener = {"type": "tcp", "bind": "%s:%d" % (host, port)}
    if tls:
        listener.update(ssl=True, certfile=str(tls[0]), keyfile=str(tls[1]))
    return {
        "listeners": {"default": listener},
        "plugins": plugins or {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


class PacketTooBig(Exception):
    pass


class PacketFlood(Exception):
    pass


class _Gate(ReaderAdapter):
    """A client's byte stream as amqtt reads it, following the packet framing: a packet
    announcing more than `limit` bytes, or more than `rate` packets in a second (once set
    for a logged-in client), ends the connection. packet() reads one whole raw packet,
    which replay() hands to amqtt afterwards."""

    def __init__(self, reader, limit, peer):
        self._reader = reader
        self._limit = limit
        self.who = "%s:%d" % peer
        self.rate = 0
        self._second = (0, 0)  # (which second, packets in it)
        self._replay = b""
        self._left = 0  # body bytes of the current packet still to come
        self._length = None  # (value, multiplier) while reading a remaining length

    async def read(self, n=-1):
        if self._replay:
            n = len(self._replay) if n < 0 else n
            data, self._replay = self._replay[:n], self._replay[n:]
            return data
        data = await self._reader.read(n)
        self._follow(data)
        return data

    def feed_eof(self):
        self._reader.feed_eof()

    def replay(self, data):
        self._replay = data + self._replay

    def _count(self):
        if not self.rate:
            return
        now = int(time.monotonic())
        n = self._second[1] + 1 if self._second[0] == now else 1
        self._second = (now, n)
        if n > self.rate:
            log.warning("broker closed %s: over %d packets a second", self.who, self.rate)
            raise PacketFlood("over %d packets a second" % self.rate)

    async def packet(self):
        head = await self.read(1)
        while self._length is not None:
            head += await self.read(1)
        return head + (await self.read(self._left) if self._left else b"")

    def _follow(self, data):
        i = 0
        while i < len(data):
            if self._left:
                step = min(self._left, len(data) - i)
                self._left -= step
                i += step
                continue
            byte = data[i]
            i += 1
            if self._length is None:
                self._length = (0, 1)  # that was the packet type; its length follows
                self._count()
                continue
            value, mult = self._length
            value += (byte & 0x7F) * mult
            if byte & 0x80:
                self._length = (value, mult * 128)
                continue
            self._length = None
            if value > self._limit:
                log.warning("broker closed %s: a %d byte packet, over the %d byte limit", self.who, value,
                            self._limit)
                raise PacketTooBig("%d byte packet, over the %d byte limit" % (value, self._limit))
            self._left = value


class _Subscriptions(dict):
    """Iterates over a copy. amqtt 0.12.1 awaits inside loops over its subscription table,
    so a client subscribing meanwhile killed another client's connection handler
    ("dictionary changed size during iteration"), e.g. when every device reconnects at
    once after a hub restart."""

    def __iter__(self):
        return iter(list(dict.keys(self)))

    def items(self):
        return list(dict.items(self))


class _Broker(Broker):
    def __init__(self, *args, client_ids=None, packet_rate=None, **kwargs):
        """client_ids(username, client id) -> whether that user may use that client id;
        packet_rate(username) -> the most packets a second that user may send (0: any)."""
        super().__init__(*args, **kwargs)
        self._subscriptions = _Subscriptions()
        self._client_ids = client_ids
        self._packet_rate = packet_rate

    async def _client_connected(self, listener_name, reader, writer):
        peer = writer.get_peer_info() or ("?", 0)
        await super()._client_connected(listener_name, _Gate(reader, MAX_PACKET, peer), writer)

    async def _initialize_client_session(self, reader, writer, remote_address, remote_port):
        try:
            raw = await asyncio.wait_for(reader.packet(), CONNECT_TIMEOUT_S)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, PacketTooBig) as exc:
            await writer.close()
            raise MQTTError("no CONNECT from %s: %s" % (reader.who, type(exc).__name__))
        reader.replay(raw)
        user, refused = await self._check(raw)
        if refused:
            code, reason = refused
            log.warning("broker refused a connection from %s: %s", reader.who, reason)
            await ConnackPacket.build(0, code).to_stream(writer)
            await writer.close()
            raise MQTTError(reason)
        if self._packet_rate:
            reader.who += " (%s)" % user
            reader.rate = self._packet_rate(user)
        return await super()._initialize_client_session(reader, writer, remote_address, remote_port)

    async def _check(self, raw):
        """(its username, (CONNACK code, reason) if the CONNECT in raw must be refused, else None)."""
        try:
            connect = await ConnectPacket.from_stream(BufferReader(raw))
        except Exception:
            return None, None  # not a readable CONNECT: amqtt refuses it itself
        user, client_id = connect.username, connect.client_id
        if self._client_ids and not connect.client_id_is_random and not self._client_ids(user, client_id):
            return user, (IDENTIFIER_REJECTED, "user %r may not use client id %r" % (user, client_id))
        session = Session()
        session.client_id, session.username, session.password = client_id, user, connect.password
        if not await self._authenticate(session, None):
            return user, (BAD_USERNAME_PASSWORD, "bad username or password for user %r" % user)
        return user, None

    async def _publish_retained_messages_for_subscription(self, subscription, session):
        # amqtt 0.12.1 calls this on connect for every filter anyone holds, so each device
        # got every retained message under the hub's rfm/#. Only the session's own filters.
        holders = self._subscriptions.get(subscription[0], ())
        if any(s.client_id == session.client_id for s, _qos in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)


class EmbeddedBroker:
    def __init__(self, host, port, plugins=None, client_ids=None, tls=None, packet_rate=None):
        """client_ids, packet_rate: see _Broker (None: no check); tls: (certfile, keyfile)."""
        self.host = host
        self.port = port
        self.plugins = plugins
        self.client_ids = client_ids
        self.packet_rate = packet_rate
        self.tls = tls
        self._broker = None

    async def start(self):
        """Must run on the event loop that will serve the broker."""
        self._broker = _Broker(config(self.host, self.port, self.plugins, self.tls), client_ids=self.client_ids,
                               packet_rate=self.packet_rate)
        await self._broker.start()
        log.info("embedded broker listening on %s:%d%s", self.host, self.port, " (TLS)" if self.tls else "")

    async def stop(self):
        await self._broker.shutdown()
        log.info("embedded broker stopped")
