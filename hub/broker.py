"""The embedded MQTT broker (amqtt), for a hub that runs without Mosquitto.

amqtt keeps retained messages in memory only and never enforces keepalive, so the
hub re-sends its snapshots after a restart and supervises heartbeats itself.
"""
import logging

from amqtt.broker import Broker

log = logging.getLogger(__name__)


def config(host, port, plugins=None):
    """plugins: auth and topic plugins (hub.access, with --auth); default anonymous demo mode."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": "%s:%d" % (host, port)}},
        "plugins": plugins or {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


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
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._subscriptions = _Subscriptions()

    async def _publish_retained_messages_for_subscription(self, subscription, session):
        # amqtt 0.12.1 calls this on connect for every filter anyone holds, so each device
        # got every retained message under the hub's rfm/#. Only the session's own filters.
        holders = self._subscriptions.get(subscription[0], ())
        if any(s.client_id == session.client_id for s, _qos in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)


class EmbeddedBroker:
    def __init__(self, host, port, plugins=None):
        self.host = host
        self.port = port
        self.plugins = plugins
        self._broker = None

    async def start(self):
        """Must run on the event loop that will serve the broker."""
        self._broker = _Broker(config(self.host, self.port, self.plugins))
        await self._broker.start()
        log.info("embedded broker listening on %s:%d", self.host, self.port)

    async def stop(self):
        await self._broker.shutdown()
        log.info("embedded broker stopped")
