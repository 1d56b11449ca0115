# ESP32 board (no PSRAM). Pins come from the board's pin map, hardware/pins/<model>.json,
# which firmware/flash.py copies to the device as pins.json (config key "pins"): button
# levels, external pulls, LEDs, display bus and deep-sleep wake mode (hardware/README.md).
import asyncio
import esp32
import framebuf
import json
import machine
import network
import os
from machine import ADC, I2C, Pin
from runtime.log import log

WAKE = {"ext1_any_high": esp32.WAKEUP_ANY_HIGH, "ext1_all_low": esp32.WAKEUP_ALL_LOW,
        "ext0_high": esp32.WAKEUP_ANY_HIGH, "ext0_low": esp32.WAKEUP_ALL_LOW}
WIFI_TIMEOUT_MS = 20000
BAT_EMPTY_MV = 3300
BAT_FULL_MV = 4200


class _Oled:
    """SSD1306 128x64 over I2C; the buffer is a MONO_VLSB FrameBuffer."""

    INIT = (0xAE, 0x20, 0x00, 0x40, 0xA1, 0xA8, 63, 0xC8, 0xD3, 0x00, 0xDA, 0x12,
            0xD5, 0x80, 0xD9, 0xF1, 0xDB, 0x30, 0x81, 0xFF, 0xA4, 0xA6, 0x8D, 0x14, 0xAF)

    def __init__(self, i2c, addr=0x3C):
        self.i2c = i2c
        self.addr = addr
        self.buf = bytearray(128 * 64 // 8)
        self.fb = framebuf.FrameBuffer(self.buf, 128, 64, framebuf.MONO_VLSB)
        for c in self.INIT:
            self._cmd(c)

    def _cmd(self, c):
        self.i2c.writeto(self.addr, bytes((0x80, c)))

    def show(self):
        for c in (0x21, 0, 127, 0x22, 0, 7):
            self._cmd(c)
        self.i2c.writevto(self.addr, (b"\x40", self.buf))


class Board:
    can_sleep = True

    def __init__(self, cfg):
        path = cfg.get("pins", "pins.json")
        try:
            with open(path) as f:
                self.pins = json.load(f)
        except (OSError, ValueError):
            raise ValueError("board: no pin map in %s (firmware/flash.py copies hardware/pins/<model>.json)" % path)
        if self.pins.get("kind") != cfg["kind"]:
            raise ValueError("board: %s is a %s pin map, not %s" % (path, self.pins.get("kind"), cfg["kind"]))
        self.wifi = cfg["wifi"]
        self.data = cfg["data"]
        self.wlan = network.WLAN(network.STA_IF)
        self._buttons = {}
        self._adc = None
        if "battery_adc" in self.pins:
            self._adc = ADC(Pin(self.pins["battery_adc"]))
            self._adc.atten(ADC.ATTN_11DB)
        try:
            os.mkdir(self.data)
        except OSError:
            pass

    def button_pin(self, name):
        # the pull resistors are on the board (GPIO34-39 have none inside)
        p = self._buttons[name] = Pin(self.pins["buttons"][name], Pin.IN)
        active = self.pins["button_active"]
        return lambda: p.value() == active

    def led_pin(self, name):
        on = self.pins.get("led_active", 1)
        p = Pin(self.pins["leds"][name], Pin.OUT, value=1 - on)
        return lambda lit: p.value(on if lit else 1 - on)

    def vibra_pin(self):
        return Pin(self.pins["vibra"], Pin.OUT, value=0).value

    def display(self):
        bus = self.pins["i2c"]
        oled = _Oled(I2C(bus["id"], sda=Pin(bus["sda"]), scl=Pin(bus["scl"]), freq=bus["freq"]),
                     self.pins["oled"]["addr"])
        return oled.fb, oled.show

    async def link(self):
        if self.wlan.isconnected():
            return True
        self.wlan.active(True)
        try:
            self.wlan.connect(self.wifi["ssid"], self.wifi["psk"])
        except OSError as e:
            log("warn", "wifi connect: %s" % e)
        for _ in range(WIFI_TIMEOUT_MS // 250):
            if self.wlan.isconnected():
                log("wifi", "up %s rssi %s" % (self.wlan.ifconfig()[0], self.rssi()))
                return True
            await asyncio.sleep_ms(250)
        log("error", "wifi %r: no link after %d ms" % (self.wifi["ssid"], WIFI_TIMEOUT_MS))
        self.wlan.disconnect()
        return False

    def battery(self):
        if self._adc is None:
            return None
        mv = int(self._adc.read_uv() * self.pins["battery_divider"]) // 1000
        return max(0, min(100, (mv - BAT_EMPTY_MV) * 100 // (BAT_FULL_MV - BAT_EMPTY_MV)))

    def rssi(self):
        try:
            return max(-127, min(0, self.wlan.status("rssi")))
        except Exception:
            return None

    def data_path(self, name):
        return self.data + "/" + name

    def woke_by(self):
        # MicroPython does not report which ext1 pin woke us: take one still held.
        if machine.reset_cause() != machine.DEEPSLEEP_RESET:
            return None
        for name, p in self._buttons.items():
            if p.value() == self.pins["button_active"]:
                return name
        return None

    def deepsleep(self):
        mode = self.pins["wake_mode"]
        pins = [Pin(n, Pin.IN) for n in self.pins["wake"]]
        if mode.startswith("ext0"):
            esp32.wake_on_ext0(pin=pins[0], level=WAKE[mode])
        else:
            esp32.wake_on_ext1(pins=pins, level=WAKE[mode])
        machine.deepsleep()

    def reboot(self):
        machine.reset()

    async def serve(self, dev):
        # Watchdog: a stuck event loop resets the board.
        wdt = machine.WDT(timeout=30000)
        while True:
            wdt.feed()
            await asyncio.sleep(5)
