"""Run the amqtt 0.12 broker alone on 127.0.0.1:<port> until SIGTERM/SIGINT.

    python tests/bench/amqtt_broker.py PORT [--as-hub]

Only the anonymous-auth plugin is loaded: the $SYS and packet-logger plugins that
amqtt loads by default cost CPU on every packet and are not part of the floor.
--as-hub runs the hub's own embedded broker (hub/broker.py, with its fixes) and nothing
else, so the hub's memory can be told apart from its broker's.
"""
import asyncio
import logging
import os
import signal
import sys

from amqtt.broker import Broker


def config(port):
    return {
        "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:%d" % port}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }


async def main(port, as_hub=False):
    if as_hub:
        sys.path.insert(0, os.environ.get("RFM_HUB_ROOT") or os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))))
        from hub.broker import EmbeddedBroker
        broker = EmbeddedBroker("127.0.0.1", port)
        await broker.start()
        stop_broker = broker.stop
    else:
        broker = Broker(config(port))
        await broker.start()
        stop_broker = broker.shutdown
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stop_broker()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(int(sys.argv[1]), "--as-hub" in sys.argv[2:]))
