# Device configuration: one JSON file (config.json) per device.
import json
import protocol

REQUIRED = ("kind", "id", "site", "board", "broker.host", "broker.port",
            "broker.user", "broker.password")
PER_BOARD = {"sim": ("ctl_port",), "esp32": ("wifi.ssid", "wifi.psk")}
DEFAULTS = {"hb": 30, "data": "data"}


class ConfigError(ValueError):
    pass


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError("config: missing key '%s'" % dotted)
        node = node[part]
    return node


def check(cfg):
    """Fill defaults and validate; raise ConfigError naming the bad key."""
    if not isinstance(cfg, dict):
        raise ConfigError("config: must be a JSON object")
    for key in REQUIRED:
        _get(cfg, key)
    if cfg["board"] not in PER_BOARD:
        raise ConfigError("config: board must be one of %s" % ", ".join(PER_BOARD))
    for key in PER_BOARD[cfg["board"]]:
        _get(cfg, key)
    if cfg["kind"] not in protocol.SUBSCRIBES:
        raise ConfigError("config: kind must be one of %s" % ", ".join(protocol.SUBSCRIBES))
    try:
        protocol.topic(cfg["site"], cfg["kind"], cfg["id"], "status")
    except protocol.ProtocolError as e:
        raise ConfigError("config: %s" % e)
    for key in DEFAULTS:
        if key not in cfg:
            cfg[key] = DEFAULTS[key]
    for key in ("broker.port", "hb"):
        if not isinstance(_get(cfg, key), int):
            raise ConfigError("config: %s must be an integer" % key)
    ca = cfg["broker"].get("ca")
    if ca is not None and not (isinstance(ca, str) and "-----BEGIN CERTIFICATE-----" in ca):
        raise ConfigError("config: broker.ca must be the hub's CA certificate (PEM), for MQTT over TLS")
    return cfg


def load(path="config.json"):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError("config: cannot read %s" % path)
    try:
        cfg = json.loads(text)
    except ValueError:
        raise ConfigError("config: %s is not valid JSON" % path)
    return check(cfg)


def save(cfg, path="config.json"):
    check(cfg)
    with open(path, "w") as f:
        f.write(json.dumps(cfg))
