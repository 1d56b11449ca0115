# Entry point on ESP32 and the unix port: app dir -> config -> board -> device -> app.
import os
import sys

# runtime/ota.py installs updates into app/ and boots them on trial (marker app.try);
# this file stays put and picks the app, so it must not import from the app first.
APP = "app"


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _rmtree(p):
    if os.stat(p)[0] & 0x4000:
        for e in list(os.ilistdir(p)):
            _rmtree(p + "/" + e[0])
        os.rmdir(p)
    else:
        os.remove(p)


def _read(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return None


def _pick_app():
    """Put app/ (if any) first on sys.path; return (version, trial boot?, note)."""
    note = None
    if not _exists(APP) and _exists(APP + ".old"):
        os.rename(APP + ".old", APP)  # power lost in the middle of a swap
    trial = _read(APP + ".try")
    if trial == "booted":  # the update's one trial boot never confirmed: roll back
        if _exists(APP + ".old"):
            _rmtree(APP)
            os.rename(APP + ".old", APP)
            note = "update never came up: rolled back"
        os.remove(APP + ".try")
        trial = None
    elif trial is not None:
        with open(APP + ".try", "w") as f:
            f.write("booted")
    if not _exists(APP):
        return None, False, note
    sys.path.insert(0, APP)
    return _read(APP + "/VERSION"), trial is not None, note


FW, TRIAL, NOTE = _pick_app()
del _exists, _rmtree, _read, _pick_app  # boot only: their heap goes back

APPS = {"table": "table_button", "pager": "waiter_pager", "kds": "kitchen_display"}


def main():
    from runtime import config  # from app/ when there is one
    from runtime.device import Device
    from runtime.log import log

    path = sys.argv[1] if len(sys.argv) > 1 else "config.json"
    try:
        cfg = config.load(path)
    except config.ConfigError as e:
        log("error", str(e))
        sys.exit(2)
    del config, sys.modules["runtime.config"], sys.modules["runtime"].config  # boot only: its heap goes back
    if NOTE:
        log("boot", NOTE)
    if FW:
        cfg["fw"] = FW
    cfg["ota_trial"] = TRIAL
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


try:
    main()
except Exception as e:  # before the board exists, e.g. an update that cannot even import
    print("boot failed: %s %s" % (type(e).__name__, e))
    sys.print_exception(e)
    if sys.platform == "linux":
        sys.exit(3)  # the sim board's reboot
    import machine
    machine.reset()
