"""The embedded broker's fixes over amqtt 0.12.1, checked in-process with paho clients."""
import asyncio
import threading

import paho.mqtt.client as mqtt
import pytest

from hub.broker import EmbeddedBroker
from tests.brokers import free_port, wait_until

N = 40


@pytest.fixture
def port():
    """An EmbeddedBroker on its own event loop in a thread."""
    port = free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    broker = EmbeddedBroker("127.0.0.1", port)
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(10)
    yield port
    asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(20)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


class Peer:
    def __init__(self, port, name, topic, clean=True):
        self.got = []
        self.suback = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, clean_session=clean)
        self.c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, 1)
        self.c.on_subscribe = lambda *args: self.suback.set()
        self.c.on_message = lambda cl, u, m: self.got.append(m.topic)
        self.port = port

    def start(self):
        self.suback.clear()
        self.c.connect_async("127.0.0.1", self.port)
        self.c.loop_start()

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_retained_messages_go_only_to_their_subscribers(port):
    wide = Peer(port, "wide", "rfm/#")
    wide.start()
    assert wide.suback.wait(10)
    info = wide.c.publish("rfm/v1/demo/pager/P1/tasks", b'{"seq":1,"tasks":[]}', qos=1, retain=True)
    info.wait_for_publish(10)
    other = Peer(port, "other", "rfm/v1/demo/pager/P2/tasks")
    mine = Peer(port, "mine", "rfm/v1/demo/pager/P1/tasks")
    for peer in (other, mine):
        peer.start()
    wait_until(lambda: mine.got, 10, "P1's retained snapshot")
    assert other.suback.wait(10)
    assert other.got == []
    for peer in (wide, other, mine):
        peer.stop()


def test_sessions_survive_everyone_reconnecting_at_once(port):
    """Persistent sessions coming back while new clients subscribe: every connection keeps working."""
    back = [Peer(port, "back%d" % n, "s/%d" % n, clean=False) for n in range(N)]
    for peer in back:
        peer.start()
    wait_until(lambda: all(p.suback.is_set() for p in back), 10, "first subscriptions")
    for n, peer in enumerate(back):
        peer.c.publish("s/%d" % n, b"r", qos=1, retain=True).wait_for_publish(10)
        peer.stop()
    fresh = [Peer(port, "fresh%d" % n, "n/%d" % n) for n in range(N)]
    for peer in back + fresh:
        peer.start()
    # A SUBACK needs the connection's message loop, which the race used to kill.
    wait_until(lambda: all(p.suback.is_set() for p in back + fresh), 10, "every SUBACK")
    for peer in back + fresh:
        peer.stop()
