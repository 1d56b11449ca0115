"""Orders to kitchen displays end to end on the real firmware: a signed Toast webhook goes
to a hub process (embedded amqtt), on to two kitchen displays running the compiled
kitchen_display bundle under MicroPython with a 112 kB heap (an LCD and an e-ink), cooks
press the sim buttons, and a test HTTP server playing the POS receives the signed status
webhooks. Each display's screen is compared pixel for pixel with the hub's PNG preview."""
import io
import urllib.request

from PIL import Image

from display import canvas
from tests import order_channels as ch
from tests.brokers import free_port, start_hub, wait_until
from tests.simdev import SimDevice

SECRET = "toast-s3cret"
HOOK_SECRET = "status-s3cret"
GUID = "8d1c4a5e-0b2f-4d7e-9a41-6f0e3c2b9d10"
LUNCH = [("s1", "宫保鸡丁", 2, ["少辣"], False), ("s2", "麻婆豆腐", 1, [], False), ("s3", "凉拌黄瓜", 1, [], False)]


def device_png(dev):
    rep = dev.request({"get": "screen"})
    with open(rep["path"], "rb") as f:
        raw = bytearray(f.read())
    fmt = canvas.RGB565 if rep["layout"] == "lcd" else canvas.MONO_HLSB
    return canvas.png(canvas.FrameBuffer(raw, rep["width"], rep["height"], fmt))


def preview(hub, dev):
    layout = dev.cfg["layout"]
    with urllib.request.urlopen("%s/api/displays/%s/screen.png?layout=%s" % (hub.http, dev.id, layout),
                                timeout=10) as resp:
        return resp.read()


def same_screen(hub, dev, what):
    """The device shows what the hub's preview of it shows."""
    def check():
        return device_png(dev) == preview(hub, dev)
    try:
        wait_until(check, 20, "%s: %s" % (dev.id, what))
    except AssertionError:
        for name, png in (("device", device_png(dev)), ("hub", preview(hub, dev))):
            Image.open(io.BytesIO(png)).save("%s/%s-%s.png" % (dev.dir, dev.id, name))
        raise


def test_webhook_to_two_displays_bumped_by_buttons_with_status_webhooks(tmp_path):
    pos = ch.StatusServer()
    mqtt_port, http_port = free_port(), free_port()
    hub = start_hub(tmp_path, mqtt_port, http_port, extra=["--status-webhook", pos.url, "--webhook-secret",
                                                             HOOK_SECRET, "--channel-secret", "toast=" + SECRET])
    devices = []
    try:
        wok = SimDevice("kds", "wok", mqtt_port, tmp_path, layout="lcd").start()
        devices.append(wok)
        cold = SimDevice("kds", "cold", mqtt_port, tmp_path, layout="eink").start()
        devices.append(cold)
        for dev in devices:
            dev.wait_for(lambda s: s["connected"], what="%s connected" % dev.id)
        first = ch.toast(SECRET, GUID, LUNCH)
        status, got = ch.post(hub.http, *first)
        assert status == 201 and got["order"] == "O1", got
        status, again = ch.post(hub.http, *first)  # the same delivery again: still one order
        assert status == 200 and again["result"] == "duplicate", again
        forged = ch.toast("guessed", "forged-guid", LUNCH)
        status, body = ch.post(hub.http, *forged)
        assert status == 401, body
        wok.wait_for(lambda s: s["app"]["selected"] == "O1-wok", 20, "wok shows O1")
        cold.wait_for(lambda s: s["app"]["selected"] == "O1-cold", 20, "cold shows O1")
        assert wok.state()["app"]["total"] == 1 and cold.state()["app"]["total"] == 1
        same_screen(hub, wok, "O1 with Chinese dish names on the LCD")
        same_screen(hub, cold, "O1 on the e-ink")
        beeps = wok.request({"get": "buzzer"})["beeps"]

        # the POS voids 麻婆豆腐: the wok's ticket marks it void (struck through), no new ticket
        voided = [("s2", "麻婆豆腐", 1, [], True) if s[0] == "s2" else s for s in LUNCH]
        status, got = ch.post(hub.http, *ch.toast(SECRET, GUID, voided))
        assert status == 200, got
        wait_until(lambda: any(i.get("void") for t in _snapshot(hub, "wok") for i in t["items"]), 20,
                   "the void on the wok's snapshot")
        same_screen(hub, wok, "the voided dish struck through")
        assert wok.state()["app"]["total"] == 1

        for dev in (wok, cold):
            dev.press("bump")  # no allergy on this order: the bump goes straight out
            dev.wait_for(lambda s: s["app"]["total"] == 0 and s["app"]["shown"] == 0, 20,
                         "%s bumped and cleared" % dev.id)
        hooks = pos.wait(HOOK_SECRET, lambda s: [b["status"] for b in s][:3] == ["received", "cooking", "ready"],
                         "status webhooks received, cooking, ready")
        assert {(b["order"], b["channel"]) for b in hooks} == {("O1", "toast")}
        assert wok.request({"get": "buzzer"})["beeps"] >= beeps
        same_screen(hub, wok, "an empty station")
        same_screen(hub, cold, "an empty station")
    finally:
        for dev in devices:
            dev.stop()
        hub.stop()
        pos.close()


def _snapshot(hub, device):
    status, body = hub.get("/api/tickets?station=%s" % device)
    assert status == 200, body
    return body["tickets"]
