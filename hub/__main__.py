"""python -m hub: the restaurant hub (MQTT broker, call desk, HTTP API)."""
import argparse
import asyncio
import contextlib
import logging
import pathlib
import signal
import sys
import urllib.parse

from amqtt.errors import BrokerError

import protocol
from hub.api import HttpServer, create_app
from hub.broker import EmbeddedBroker
from hub.bus import Bus
from hub.core import Hub
from hub.store import Store

log = logging.getLogger("hub")

DB_NAME = "hub.sqlite3"
QUIET_LIBRARIES = ("amqtt", "transitions", "werkzeug")


class SiteMismatch(Exception):
    pass


def broker_url(text):
    url = urllib.parse.urlsplit(text)
    try:
        port = url.port or 1883
    except ValueError:
        port = None
    if url.scheme != "mqtt" or not url.hostname or port is None or url.path not in ("", "/"):
        raise argparse.ArgumentTypeError("expected mqtt://HOST:PORT, got %r" % text)
    return url.hostname, port


def site_name(text):
    try:
        protocol.topic(text, "hub", protocol.HUB_ID, "error")
    except protocol.ProtocolError as exc:
        raise argparse.ArgumentTypeError("site %r: %s" % (text, exc.reason))
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m hub",
        description="The restaurant hub: MQTT broker (embedded amqtt unless --broker), call desk, HTTP API.")
    parser.add_argument("--mqtt-port", type=int, default=1883,
                        help="port of the embedded broker (default 1883; ignored with --broker)")
    parser.add_argument("--http-port", type=int, default=8080, help="port of the HTTP API (default 8080)")
    parser.add_argument("--bind", default="127.0.0.1",
                        help="address the embedded broker and the HTTP API listen on "
                             "(default 127.0.0.1; 0.0.0.0 to serve the devices on the LAN)")
    parser.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path("data"),
                        help="directory of the SQLite database (default ./data)")
    parser.add_argument("--site", type=site_name, default="demo",
                        help="restaurant id in the topics rfm/v1/<site>/... (default demo)")
    parser.add_argument("--broker", type=broker_url, metavar="mqtt://HOST:PORT",
                        help="use this external broker (e.g. Mosquitto) instead of the embedded one")
    parser.add_argument("--log-level", type=str.upper, default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default INFO")
    return parser.parse_args(argv)


def setup_logging(level):
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    if level != "DEBUG":
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)


async def run(args):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # Shutdown runs in reverse: HTTP, core, MQTT link, broker, database.
    async with contextlib.AsyncExitStack() as stack:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(args.data_dir / DB_NAME)
        stack.callback(store.close)
        owner = store.setting("site", args.site)
        if owner != args.site:
            raise SiteMismatch("%s holds site %r, not %r" % (store.path, owner, args.site))
        if args.broker:
            host, port = args.broker
        else:
            broker = EmbeddedBroker(args.bind, args.mqtt_port)
            await broker.start()
            stack.push_async_callback(broker.stop)
            host, port = ("127.0.0.1" if args.bind in ("0.0.0.0", "") else args.bind), args.mqtt_port
        hub = Hub(store, args.site)
        http = HttpServer(create_app(hub), args.bind, args.http_port)
        hub.bus = Bus(host, port, args.site,
                      on_uplink=lambda *msg: hub.submit(hub.uplink, *msg),
                      on_connect=lambda: hub.submit(hub.restore))
        hub.bus.start()
        stack.push_async_callback(asyncio.to_thread, hub.bus.stop)
        hub.start()
        stack.push_async_callback(asyncio.to_thread, hub.stop)
        http.start()
        stack.push_async_callback(asyncio.to_thread, http.stop)
        log.info("hub up: site %s, broker %s%s, http %s, data %s", args.site, hub.bus.url,
                 "" if args.broker else " (embedded)", http.url, store.path)
        await stop.wait()
        log.info("stopping")
    log.info("hub stopped")


def main(argv=None):
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        asyncio.run(run(args))
    except (OSError, BrokerError, SiteMismatch) as exc:
        log.error("hub failed to start: %s", exc)
        return 1
    except Exception:
        log.exception("hub failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
