# Checks the hardware data (pin maps and BOMs) that firmware/boards/esp32.py and the
# build rely on. Each rule is a function returning a list of error strings, and the
# "bad_*" tests feed it deliberately broken data so we know every rule can fail.
import copy
import csv
import io
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HW = os.path.join(ROOT, "hardware")
import protocol  # noqa: E402

MODELS = ("table_button", "waiter_pager", "kitchen_eink", "kitchen_lcd")
BOM_COLUMNS = ["ref", "part", "manufacturer", "manufacturer part number", "qty", "notes"]

# --- ESP32-WROOM-32E facts (ESP32 datasheet / ESP-IDF GPIO table) ----------------
FLASH = set(range(6, 12))                 # SPI flash inside the module
STRAPPING = {0, 2, 5, 12, 15}
UART0 = {1, 3}                            # REPL and flashing
INPUT_ONLY = {34, 35, 36, 37, 38, 39}     # no output driver, no internal pulls
ERRATA_36_39 = {36, 39}                   # ~80 ns pull-down glitch (errata GPIO-3.11)
ADC1 = set(range(32, 40))                 # ADC2 is unusable while Wi-Fi is on
RTC = {0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39}
ON_MODULE = {0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23,
             25, 26, 27, 32, 33, 34, 35, 36, 39} | FLASH   # 37/38 not bonded out

IN, OUT, IO, ADC = "in", "out", "io", "adc"
# Where pins live in a map and how they are used; a group key covers all its members.
ROLE = {
    "buttons": IN, "leds": OUT, "battery_adc": ADC, "charge_stat": IN,
    "vibra": OUT, "buzzer": OUT,
    "i2c.sda": IO, "i2c.scl": IO,
    "spi.sck": OUT, "spi.mosi": OUT, "spi.miso": IN,
    "epd.cs": OUT, "epd.dc": OUT, "epd.rst": OUT, "epd.busy": IN,
    "lcd.cs": OUT, "lcd.dc": OUT, "lcd.rst": OUT, "lcd.backlight": OUT,
}
# Numbers that are not pins. Any other number in a map is an error, so a new pin
# field cannot slip past the checks unclassified.
NOT_PINS = {"button_active", "led_active", "battery_divider", "i2c.id", "i2c.freq",
            "oled.addr", "oled.width", "oled.height", "spi.id", "spi.baudrate",
            "epd.width", "epd.height", "lcd.width", "lcd.height"}
REQUIRED = {
    "table_button": ("buttons", "leds", "battery_adc", "wake"),
    "waiter_pager": ("buttons", "i2c.sda", "i2c.scl", "oled.addr", "vibra", "battery_adc", "wake"),
    "kitchen_eink": ("buttons", "spi.sck", "spi.mosi", "epd.cs", "epd.dc", "epd.rst",
                     "epd.busy", "buzzer"),
    "kitchen_lcd": ("buttons", "spi.sck", "spi.mosi", "lcd.cs", "lcd.dc", "lcd.rst",
                    "lcd.backlight", "buzzer"),
}
BUTTONS = {
    "table_button": set(protocol.CALL_TYPES) | {"cancel"},
    "waiter_pager": {"ack", "done", "next"},
    "kitchen_eink": {"bump", "recall"},
    "kitchen_lcd": {"bump", "recall"},
}
KIND = {"table_button": "table", "waiter_pager": "pager",
        "kitchen_eink": "kds", "kitchen_lcd": "kds"}
WAKE_MODES = ("ext0_low", "ext0_high", "ext1_all_low", "ext1_any_high")


def load_map(model):
    with open(os.path.join(HW, "pins", model + ".json")) as f:
        return json.load(f)


def pins_of(m):
    """[(path, pin, role)] for every pin in a map; unknown numbers become role None."""
    out = []
    for key, val in m.items():
        if key == "wake":
            continue
        if isinstance(val, dict):
            for sub, v in val.items():
                path = key + "." + sub
                if isinstance(v, bool) or not isinstance(v, int) or path in NOT_PINS:
                    continue
                out.append((path, v, ROLE.get(path, ROLE.get(key))))
        elif isinstance(val, int) and not isinstance(val, bool) and key not in NOT_PINS:
            out.append((key, val, ROLE.get(key)))
    return out


def check_map(model, m):
    errs = []
    if m.get("model") != model:
        errs.append("model %r does not match file %s" % (m.get("model"), model))
    if m.get("kind") != KIND.get(model) or m.get("kind") not in protocol.SUBSCRIBES:
        errs.append("kind %r is not the protocol kind %r" % (m.get("kind"), KIND.get(model)))
    for path in REQUIRED.get(model, ()):
        node = m
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            errs.append("missing %s" % path)
    if set(m.get("buttons", {})) != BUTTONS.get(model, set()):
        errs.append("buttons %s, expected %s" % (sorted(m.get("buttons", {})),
                                                 sorted(BUTTONS.get(model, ()))))
    if model == "table_button" and set(m.get("leds", {})) != set(protocol.CALL_TYPES):
        errs.append("leds must be one per call type %s" % (protocol.CALL_TYPES,))
    seen = {}
    for path, pin, role in pins_of(m):
        where = "%s=GPIO%d" % (path, pin)
        if role is None:
            errs.append("%s: unclassified pin field (add it to ROLE or NOT_PINS)" % where)
            continue
        if pin in seen:
            errs.append("%s: GPIO%d already used by %s" % (where, pin, seen[pin]))
        seen[pin] = path
        if pin in FLASH:
            errs.append("%s: GPIO6-11 are the module's SPI flash" % where)
        elif pin not in ON_MODULE:
            errs.append("%s: not a pin of ESP32-WROOM-32E" % where)
        if pin in STRAPPING:
            errs.append("%s: strapping pin" % where)
        if pin in UART0:
            errs.append("%s: UART0 (REPL/flashing)" % where)
        if pin in INPUT_ONLY and role not in (IN, ADC):
            errs.append("%s: GPIO34-39 are input-only, used as %s" % (where, role))
        if role == ADC and pin not in ADC1:
            errs.append("%s: ADC must be on ADC1 (GPIO32-39); ADC2 is blocked by Wi-Fi" % where)
        if path.startswith("buttons.") and pin in INPUT_ONLY \
                and not str(m.get("button_pull", "")).startswith("external"):
            errs.append("%s: input-only pin has no internal pull; needs external" % where)
        if path.startswith("buttons.") and pin in ERRATA_36_39 and m.get("button_active") != 1:
            errs.append("%s: GPIO36/39 glitch low (errata); only idle-low buttons allowed" % where)
    errs += check_wake(model, m)
    return errs


def check_wake(model, m):
    errs = []
    wake = m.get("wake")
    if wake is None:
        if model in ("table_button", "waiter_pager"):
            errs.append("battery device without wake pins")
        return errs
    mode = m.get("wake_mode")
    if mode not in WAKE_MODES:
        errs.append("wake_mode %r not one of %s" % (mode, WAKE_MODES))
    buttons = m.get("buttons", {})
    for pin in wake:
        if pin not in RTC:
            errs.append("wake GPIO%s is not an RTC GPIO (ext0/ext1 need RTC pins)" % pin)
        if pin not in buttons.values():
            errs.append("wake GPIO%s is not a button" % pin)
    if len(set(wake)) != len(wake):
        errs.append("wake pins repeated")
    if mode and mode.startswith("ext0") and len(wake) != 1:
        errs.append("ext0 wakes on exactly one pin")
    level = {"ext0_low": 0, "ext0_high": 1, "ext1_all_low": 0, "ext1_any_high": 1}.get(mode)
    if level is not None and m.get("button_active") != level:
        errs.append("wake_mode %s needs button_active=%d" % (mode, level))
    if mode == "ext1_all_low" and len(wake) > 1:
        errs.append("ext1_all_low with several buttons wakes only when all are pressed")
    if model == "table_button" and set(wake) != set(buttons.values()):
        errs.append("every table button must wake the device")
    return errs


def read_bom(text):
    return list(csv.reader(io.StringIO(text)))


def check_bom(rows):
    errs = []
    if not rows or rows[0] != BOM_COLUMNS:
        return ["header %r, expected %r" % (rows[0] if rows else None, BOM_COLUMNS)]
    if len(rows) < 2:
        errs.append("no parts")
    refs = set()
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(BOM_COLUMNS):
            errs.append("line %d: %d columns" % (n, len(row)))
            continue
        ref, part, mfr, mpn, qty, _notes = row
        for name, val in (("ref", ref), ("part", part), ("manufacturer", mfr), ("mpn", mpn)):
            if not val.strip():
                errs.append("line %d: empty %s" % (n, name))
        try:
            q = int(qty)
        except ValueError:
            q = 0
        if q < 1:
            errs.append("line %d: qty %r is not a positive integer" % (n, qty))
        parts = ref.split()
        if q >= 1 and len(parts) not in (1, q):
            errs.append("line %d: %d refs for qty %d" % (n, len(parts), q))
        for r in parts:
            if r in refs:
                errs.append("line %d: ref %s repeated" % (n, r))
            refs.add(r)
    return errs


def bom_qty(rows, mpn_prefix):
    return sum(int(r[4]) for r in rows[1:] if r[3].startswith(mpn_prefix))


def bom_rows(model):
    with open(os.path.join(HW, "bom", model + ".csv"), newline="") as f:
        return read_bom(f.read())


# --- the real data ------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_pin_map_is_valid(model):
    assert check_map(model, load_map(model)) == []


@pytest.mark.parametrize("model", MODELS)
def test_bom_is_complete(model):
    rows = bom_rows(model)
    assert check_bom(rows) == []
    assert bom_qty(rows, "ESP32-WROOM-32E") == 1
    # one switch per button in the pin map
    assert bom_qty(rows, "B3F-") == len(load_map(model)["buttons"])


def test_every_model_has_both_files():
    for d, ext in (("pins", ".json"), ("bom", ".csv")):
        names = sorted(f[:-len(ext)] for f in os.listdir(os.path.join(HW, d)) if f.endswith(ext))
        assert names == sorted(MODELS)


# --- every rule can fail ---------------------------------------------------------
def broken(model, edit):
    m = copy.deepcopy(load_map(model))
    edit(m)
    return check_map(model, m)


def test_bad_pin_used_twice():
    assert any("already used" in e for e in broken("table_button", lambda m: m["leds"].update(water=32)))


def test_bad_flash_pin():
    assert any("SPI flash" in e for e in broken("kitchen_lcd", lambda m: m["lcd"].update(dc=7)))


def test_bad_input_only_as_output():
    errs = broken("waiter_pager", lambda m: m.update(vibra=36))
    assert any("input-only" in e for e in errs)


def test_bad_strapping_and_uart_pins():
    assert any("strapping" in e for e in broken("kitchen_eink", lambda m: m.update(buzzer=12)))
    assert any("UART0" in e for e in broken("kitchen_eink", lambda m: m.update(buzzer=1)))


def test_bad_wake_pin_not_rtc():
    def edit(m):
        m["buttons"]["cancel"] = 18
        m["wake"][-1] = 18
    assert any("not an RTC GPIO" in e for e in broken("table_button", edit))


def test_bad_wake_level_and_coverage():
    assert any("button_active" in e for e in broken("table_button", lambda m: m.update(button_active=0)))
    assert any("must wake" in e for e in broken("table_button", lambda m: m["wake"].pop()))
    assert any("exactly one" in e for e in broken("waiter_pager", lambda m: m["wake"].append(33)))


def test_bad_adc_on_adc2():
    assert any("ADC1" in e for e in broken("table_button", lambda m: m.update(battery_adc=4)))


def test_bad_unclassified_pin_field():
    assert any("unclassified" in e for e in broken("kitchen_lcd", lambda m: m.update(fan=19)))


def test_bad_missing_button_and_pin_not_on_module():
    assert any("buttons" in e for e in broken("waiter_pager", lambda m: m["buttons"].pop("next")))
    assert any("not a pin" in e for e in broken("kitchen_eink", lambda m: m["epd"].update(rst=24)))


def test_bad_bom_rows():
    good = "ref,part,manufacturer,manufacturer part number,qty,notes\nU1,MCU,Espressif Systems,ESP32-WROOM-32E-N4,1,\n"
    assert check_bom(read_bom(good)) == []
    assert any("empty mpn" in e for e in check_bom(read_bom(good.replace("ESP32-WROOM-32E-N4", " "))))
    assert any("header" in e for e in check_bom(read_bom(good.replace("notes", "note"))))
    assert any("qty" in e for e in check_bom(read_bom(good.replace(",1,", ",0,"))))
    assert any("repeated" in e for e in check_bom(read_bom(good + "U1,LDO,Richtek,RT9080-33GJ5,1,\n")))


# --- power budget script --------------------------------------------------------
def run_power(*args):
    return subprocess.run([sys.executable, os.path.join(HW, "power.py")] + list(args),
                          capture_output=True, text=True, timeout=60)


def test_power_help_and_presses():
    assert run_power("--help").returncode == 0
    lives = []
    for presses in ("10", "40", "160"):
        out = run_power("--presses", presses, "--csv")
        assert out.returncode == 0, out.stderr
        rows = [line.split(",") for line in out.stdout.splitlines() if line.startswith("table_button,")]
        lives.append(float(rows[0][-1]))   # first scenario, battery life in days
    assert lives[0] > lives[1] > lives[2] > 0


def test_power_uses_protocol_sizes():
    sys.path.insert(0, HW)
    try:
        import power
    finally:
        sys.path.remove(HW)
    msgs = power.messages()
    raw = protocol.encode("call", {"id": "T12-1234", "action": "raise", "type": "water"})
    assert msgs["call raise"] == raw
    assert all(len(v) <= protocol.MESSAGES[k.split()[0]][4] for k, v in msgs.items())
