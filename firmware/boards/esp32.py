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
import struct
import time
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


class _Spi:
    """A panel on SPI with chip select and data/command lines."""

    def __init__(self, spi, p):
        self.spi = spi
        self.cs = Pin(p["cs"], Pin.OUT, value=1)
        self.dc = Pin(p["dc"], Pin.OUT, value=0)
        rst = Pin(p["rst"], Pin.OUT, value=1)
        rst.value(0)
        time.sleep_ms(10)
        rst.value(1)
        time.sleep_ms(120)

    def cmd(self, c, data=b""):
        self.cs.value(0)
        self.dc.value(0)
        self.spi.write(bytes((c,)))
        if data:
            self.dc.value(1)
            self.spi.write(data)
        self.cs.value(1)


class _Ili9341(_Spi):
    """ILI9341 320x240 in landscape. push() writes a window of big-endian RGB565
    rows, the byte order display.kds draws in; pixels show at once."""

    def __init__(self, spi, p):
        super().__init__(spi, p)
        self.light = machine.PWM(Pin(p["backlight"]), freq=1000, duty_u16=65535)
        # software reset, sleep out, 16 bit pixels, row/column exchange + BGR, display on
        for c, data, ms in ((0x01, b"", 150), (0x11, b"", 120), (0x3A, b"\x55", 0), (0x36, b"\x28", 0),
                            (0x29, b"", 20)):
            self.cmd(c, data)
            time.sleep_ms(ms)

    def push(self, x, y, w, h, buf):
        self.cmd(0x2A, struct.pack(">HH", x, x + w - 1))
        self.cmd(0x2B, struct.pack(">HH", y, y + h - 1))
        self.cmd(0x2C, buf)

    def refresh(self, rects):
        pass


class _Epd42(_Spi):
    """Waveshare 4.2" e-paper V2 (SSD1683), 400x300, MONO_HLSB rows with 1 = white.
    push() writes a window of the panel's RAM (x and width on 8 px boundaries, as
    display.kds cells are); refresh() shows the RAM with the full waveform (0xF7,
    ~4 s, BUSY high meanwhile), right on every panel revision. The fast partial
    waveform also needs the previous image in RAM 0x26: enable it per Waveshare's
    notes for the revision named by epd.panel in the pin map."""

    def __init__(self, spi, p):
        super().__init__(spi, p)
        self.busy = Pin(p["busy"], Pin.IN)
        self.wait()
        self.cmd(0x12)  # software reset
        self.wait()
        self.cmd(0x21, b"\x40\x00")  # display update control: normal RAM
        self.cmd(0x3C, b"\x05")  # border waveform
        self.cmd(0x11, b"\x03")  # data entry: x then y increasing

    def wait(self):
        for _ in range(400):  # at most 10 s
            if not self.busy.value():
                return
            time.sleep_ms(25)
        log("error", "e-paper still busy after 10 s")

    def push(self, x, y, w, h, buf):
        self.cmd(0x44, bytes((x // 8, (x + w - 1) // 8)))
        self.cmd(0x45, struct.pack("<HH", y, y + h - 1))
        self.cmd(0x4E, bytes((x // 8,)))
        self.cmd(0x4F, struct.pack("<H", y))
        self.cmd(0x24, buf)

    def refresh(self, rects):
        self.cmd(0x22, b"\xf7")
        self.cmd(0x20)
        self.wait()


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

    def has_button(self, name):
        return name in self.pins["buttons"]

    def buzzer_pin(self):
        """The piezo wants ~2.8 kHz at 50 %, not DC."""
        pwm = machine.PWM(Pin(self.pins["buzzer"]), freq=2800, duty_u16=0)
        return lambda on: pwm.duty_u16(32768 if on else 0)

    def panel(self, name, width, height):
        """The kitchen panel for a display.kds layout, on the pin map's SPI bus."""
        part = "epd" if name == "eink" else "lcd"
        if part not in self.pins or (self.pins[part]["width"], self.pins[part]["height"]) != (width, height):
            raise ValueError("board: layout %s needs a %dx%d %s in the pin map" % (name, width, height, part))
        s = self.pins["spi"]
        spi = machine.SPI(s["id"], baudrate=s["baudrate"], sck=Pin(s["sck"]), mosi=Pin(s["mosi"]))
        return (_Epd42 if part == "epd" else _Ili9341)(spi, self.pins[part])

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
