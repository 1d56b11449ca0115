"""python -m hub: the restaurant hub (MQTT broker, call desk, HTTP API)."""
import argparse
import asyncio
import contextlib
import logging
import pathlib
import signal
import sys
import urllib.parse

import protocol
from hub.access import SUPERUSERS, Access, username
from hub.api import HttpServer, create_app
from hub.bouncer import BURST, PACKETS_S, RATE
from hub.bus import Bus
from hub.certs import Certs, lan_hosts
from hub.channels import ADAPTERS
from hub.core import Hub
from hub.fleet import LOW_BATTERY, Registry
from hub.kitchen import stored_menu
from hub.floor import FloorError, read_file
from hub.stations import MenuError, load_menu
from hub.store import Store
from hub.webhooks import StatusWebhook

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


def floor_file(text):
    try:
        return pathlib.Path(text), read_file(text)
    except FloorError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def menu_file(text):
    try:
        menu = load_menu(text)
    except MenuError as exc:
        raise argparse.ArgumentTypeError(str(exc))
    menu.path = text  # menu changes made over HTTP are written back here
    return menu


def webhook_url(text):
    url = urllib.parse.urlsplit(text)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise argparse.ArgumentTypeError("expected http(s)://HOST[:PORT]/PATH, got %r" % text)
    return text


def channel_secret(text):
    name, sep, secret = text.partition("=")
    known = sorted(ADAPTERS) + ["api"]
    if not sep or not secret or name not in known:
        raise argparse.ArgumentTypeError("expected NAME=SECRET with NAME one of %s, got %r"
                                         % (", ".join(known), name or text))
    return name, secret


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m hub",
        description="The restaurant hub: MQTT broker (embedded amqtt unless --broker), call desk, HTTP API.")
    parser.add_argument("--mqtt-port", type=int, default=None,
                        help="port of the embedded broker (default 1883, 8883 with --tls; ignored with --broker)")
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
    parser.add_argument("--floor", type=floor_file, metavar="FILE",
                        help="floor plan JSON (call types, sections, waiters, shifts, escalation); "
                             "changes made over HTTP are written back to it (default: the floor kept "
                             "in the database, else a built-in demo floor)")
    parser.add_argument("--auth", action="store_true",
                        help="per-device MQTT credentials and topic ACLs on the broker, and an admin token "
                             "for HTTP writes (files in <data-dir>/auth; default: anonymous demo mode)")
    parser.add_argument("--broker-reload", metavar="CMD",
                        help="with --auth and --broker: command that makes the external broker re-read "
                             "the auth files after a registration, e.g. 'systemctl reload mosquitto'")
    parser.add_argument("--tls", action="store_true",
                        help="MQTT (embedded broker, or the Mosquitto listener --auth writes) and HTTP over TLS, "
                             "with the hub's own CA in <data-dir>/tls, made on first use (python -m hub.certs); "
                             "registered devices get the CA in their config")
    parser.add_argument("--tls-host", action="append", default=[], metavar="HOST",
                        help="with --tls: another address or name devices use to reach the hub; repeat "
                             "(this machine's LAN address and names are always in its certificate)")
    parser.add_argument("--device-rate", type=float, default=RATE, metavar="N",
                        help="messages a second one device may send, sustained (burst %d); a device over it "
                             "is flagged and its excess dropped (default %g; 0: no limit)" % (BURST, RATE))
    parser.add_argument("--low-battery", type=int, default=LOW_BATTERY, metavar="PERCENT",
                        help="battery level under which a device raises a task (default %d)" % LOW_BATTERY)
    parser.add_argument("--menu", type=menu_file, metavar="FILE",
                        help="menu JSON: kitchen stations, their displays and ageing thresholds, and which "
                             "dish or category each cooks; changes made over HTTP are written back to it "
                             "(default: the menu kept in the database, else a built-in demo menu)")
    parser.add_argument("--channel-secret", type=channel_secret, action="append", default=[],
                        metavar="NAME=SECRET",
                        help="signing secret of an order channel (%s; 'api' makes POST /api/orders need "
                             "a signature); repeat for each channel" % ", ".join(sorted(ADAPTERS)))
    parser.add_argument("--status-webhook", type=webhook_url, metavar="URL",
                        help="POST every order status change here (signed, retried from a durable outbox)")
    parser.add_argument("--webhook-secret", metavar="SECRET",
                        help="HMAC-SHA256 key signing the status webhook (required with --status-webhook)")
    parser.add_argument("--log-level", type=str.upper, default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default INFO")
    args = parser.parse_args(argv)
    if args.mqtt_port is None:
        args.mqtt_port = 8883 if args.tls else 1883
    if args.status_webhook and not args.webhook_secret:
        parser.error("--status-webhook needs --webhook-secret")
    return args


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
        certs = None
        bind = None if args.bind in ("0.0.0.0", "") else args.bind
        if args.tls:
            certs = Certs(args.data_dir)
            hosts = certs.ensure(lan_hosts() + args.tls_host + ([bind] if bind else []), args.site)
            log.info("TLS on: CA %s, hub certificate for %s", certs.path("ca"), ", ".join(hosts))
        access = None
        if args.auth:
            listener = (bind, args.broker[1] if args.broker else 1883)
            access = Access(args.data_dir, args.site, args.broker_reload, listener, certs and certs.files())
            access.write(Registry(store).credentials())
        if args.broker:
            host, port = args.broker
        else:
            from hub.broker import EmbeddedBroker  # amqtt is loaded only for the embedded broker
            # the broker's limit is twice the hub's: the hub still sees a flood, flags it and says so
            plugins = access.amqtt_plugins(2 * args.device_rate, 2 * BURST) if access else None
            broker = EmbeddedBroker(args.bind, args.mqtt_port, plugins, access.client_id_ok if access else None,
                                    certs and (certs.path("cert"), certs.path("key")),
                                    access and (lambda user: 0 if user in SUPERUSERS else PACKETS_S))
            await broker.start()
            stack.push_async_callback(broker.stop)
            host, port = ("127.0.0.1" if args.bind in ("0.0.0.0", "") else args.bind), args.mqtt_port
        webhooks = StatusWebhook(store, args.status_webhook, args.webhook_secret) if args.status_webhook else None
        hub = Hub(store, args.site, menu=args.menu or stored_menu(store), webhooks=webhooks,
                  channel_secrets=dict(args.channel_secret))
        hub.bouncer.rate = args.device_rate
        if access:
            def quarantine(now, kind, device, flooding):
                access.quarantine(username(kind, device), flooding, Registry(store).credentials())
            hub.bouncer.on_flood = lambda kind, device, flooding: hub.submit(quarantine, kind, device, flooding)
        hub.fleet.setup(args.data_dir, access, port, args.low_battery)
        hub.fleet.ca = certs and certs.ca_pem()
        if args.floor:
            hub.floor.path, doc = args.floor
            hub.floor.set(doc, write=False)
        http = HttpServer(create_app(hub), args.bind, args.http_port, certs and certs.server_context())
        hub.bus = Bus(host, port, args.site,
                      on_uplink=lambda kind, dev, msg, payload, ack: hub.submit(hub.uplink, kind, dev, msg,
                                                                                payload, after=ack),
                      on_connect=lambda: hub.submit(hub.restore),
                      auth=access.hub_identity() if access else None, bouncer=hub.bouncer,
                      tls=certs and certs.path("ca"))
        hub.bus.start()
        stack.push_async_callback(asyncio.to_thread, hub.bus.stop)
        hub.start()
        stack.push_async_callback(asyncio.to_thread, hub.stop)
        if webhooks:
            webhooks.start()
            stack.push_async_callback(asyncio.to_thread, webhooks.stop)
        http.start()
        stack.push_async_callback(asyncio.to_thread, http.stop)
        log.info("hub up: site %s, broker %s%s, http %s, data %s", args.site, hub.bus.url,
                 "" if args.broker else " (embedded)", http.url, store.path)
        if access:
            log.info("broker auth on: files in %s, admin token in %s", access.dir, access.path("admin_token"))
        await stop.wait()
        log.info("stopping")
    log.info("hub stopped")


def _broker_errors():
    """amqtt's startup error, if the embedded broker was loaded."""
    errors = sys.modules.get("amqtt.errors")
    return (errors.BrokerError,) if errors else ()


def main(argv=None):
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        asyncio.run(run(args))
    except (OSError, SiteMismatch, *_broker_errors()) as exc:
        log.error("hub failed to start: %s", exc)
        return 1
    except Exception:
        log.exception("hub failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
