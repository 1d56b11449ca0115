# Entry point on ESP32 and the unix port: config -> board -> device -> app.
import sys
from runtime import config
from runtime.device import Device
from runtime.log import log

APPS = {"table": "table_button", "pager": "waiter_pager"}


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "config.json"
    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        log("error", str(e))
        sys.exit(2)
    if cfg["kind"] not in APPS:
        log("error", "no app for kind %r" % cfg["kind"])
        sys.exit(2)
    board = __import__("boards." + cfg["board"], None, None, ["Board"]).Board(cfg)
    dev = Device(cfg, board)
    app = __import__("apps." + APPS[cfg["kind"]], None, None, ["App"]).App(dev)
    try:
        dev.run(app)
    except Exception as e:
        log("error", "fatal: %s %s" % (type(e).__name__, e))
        sys.print_exception(e)
        board.reboot()


main()
