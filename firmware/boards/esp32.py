# ESP32 board (no PSRAM). Pin numbers live in PINS until hardware/ pin maps
# become data files. Buttons are active-high with pull-downs so that any of
# them can wake the chip from deep sleep (ext1, RTC GPIOs only).
import asyncio
import esp32
import framebuf
import machine
import network
import os
from machine import ADC, I2C, Pin
from runtime.log import log

PINS = {
    "table": {"buttons": {"water": 32, "napkins": 33, "bill": 25, "waiter": 26, "cancel": 27},
              "leds": {"water": 16, "napkins": 17, "bill": 18, "waiter": 19},
              "battery": 35},
    "pager": {"buttons": {"ack": 32, "done": 33, "next": 25},
              "vibra": 26, "i2c": (21, 22), "battery": 35},
}
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
        self.pins = PINS[cfg["kind"]]
        self.wifi = cfg["wifi"]
        self.data = cfg["data"]
        self.wlan = network.WLAN(network.STA_IF)
        self._buttons = {}
        self._adc = None
        if "battery" in self.pins:
            self._adc = ADC(Pin(self.pins["battery"]))
            self._adc.atten(ADC.ATTN_11DB)
        try:
            os.mkdir(self.data)
        except OSError:
            pass

    def button_pin(self, name):
        p = self._buttons[name] = Pin(self.pins["buttons"][name], Pin.IN, Pin.PULL_DOWN)
        return p.value

    def led_pin(self, name):
        return Pin(self.pins["leds"][name], Pin.OUT, value=0).value

    def vibra_pin(self):
        return Pin(self.pins["vibra"], Pin.OUT, value=0).value

    def display(self):
        sda, scl = self.pins["i2c"]
        oled = _Oled(I2C(0, sda=Pin(sda), scl=Pin(scl), freq=400000))
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
        mv = self._adc.read_uv() * 2 // 1000  # 1:2 divider
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
            if p.value():
                return name
        return None

    def deepsleep(self):
        esp32.wake_on_ext1(pins=list(self._buttons.values()), level=esp32.WAKEUP_ANY_HIGH)
        machine.deepsleep()

    def reboot(self):
        machine.reset()

    async def serve(self, dev):
        # Watchdog: a stuck event loop resets the board.
        wdt = machine.WDT(timeout=30000)
        while True:
            wdt.feed()
            await asyncio.sleep(5)
