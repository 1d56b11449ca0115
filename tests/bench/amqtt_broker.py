"""Run the amqtt 0.12 broker alone on 127.0.0.1:<port> until SIGTERM/SIGINT.

    python tests/bench/amqtt_broker.py PORT

Only the anonymous-auth plugin is loaded: the $SYS and packet-logger plugins that
amqtt loads by default cost CPU on every packet and are not part of the floor.
"""
import asyncio
import logging
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


async def main(port):
    broker = Broker(config(port))
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(int(sys.argv[1])))
