#!/usr/bin/env python3
"""Power budget for the restaurant messaging devices.

Message sizes come from the repo's own `protocol` module (protocol.encode) and
from MQTT 3.1.1 packets built exactly the way firmware/runtime/mqtt.py builds
them; 802.11 airtime is computed from those sizes at a stated PHY rate. Current
figures are datasheet typicals (see DATASHEET below and hardware/power.md);
timings that no datasheet gives are marked as assumptions and are options.

    python3 hardware/power.py                 # tables for all four devices
    python3 hardware/power.py --presses 80    # busier table
    python3 hardware/power.py --csv           # machine-readable summary
"""
import argparse
import math
import os
import struct
import sys

HW = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HW)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
import protocol  # noqa: E402

# --- datasheet figures (typical) -------------------------------------------------
DATASHEET = {
    # ESP32 Series Datasheet: RF power-consumption specs and power modes.
    "tx_dsss_ma": (240, "ESP32: TX 802.11b 1 Mbps @19.5 dBm"),
    "tx_ofdm_ma": (190, "ESP32: TX 802.11g 54 Mbps @16 dBm (180 mA for 11n MCS7)"),
    "rx_ma": (100, "ESP32: RX/listen 802.11b/g/n, 95-100 mA"),
    "tx_peak_ma": (370, "ESP32 module datasheets: 802.11b TX peak ~368 mA"),
    "cpu160_ma": (30, "ESP32: modem-sleep, CPU 160 MHz, 27-44 mA"),
    "cpu_boot_ma": (40, "ESP32: CPU on, radio off, booting (upper part of 27-44 mA)"),
    "deep_sleep_ua": (10, "ESP32: deep sleep, RTC timer + RTC memory"),
    "ldo_iq_ua": (2, "Richtek RT9080: 2 uA ground current"),
    "protector_ua": (4, "TI BQ29700: 4 uA typ normal mode"),
    "charger_leak_ua": (2, "Microchip MCP73831: reverse discharge < 2 uA (max, used as is)"),
    "motor_ma": (65, "Adafruit 1201: 60 mA at 3 V, 80 mA at 4 V; 3.3 V drive"),
    "epd_refresh_mw": (26.4, "Waveshare 4.2inch e-Paper: refresh power 26.4 mW, full refresh 4 s"),
    "epd_refresh_s": (4.0, "Waveshare 4.2inch e-Paper: full refresh 4 s"),
}


def ds(key):
    return DATASHEET[key][0]


# --- representative messages ------------------------------------------------------
SITE, TABLE, PAGER, KDS = "demo", "T12", "P3", "grill"
CALL_ID = "T12-1234"


def _status(online=True, **extra):
    s = {"online": online}
    if online:  # same key order as firmware/runtime/device.py status()
        s.update({"fw": "0.1.0", "hb": 30, "uptime": 3, "heap": 95000,
                  "battery": 87, "rssi": -61})
    s.update(extra)
    return s


def _tasks(n=5):
    types = protocol.CALL_TYPES
    return {"seq": 1042, "tasks": [
        {"id": "T%d-%d" % (10 + i, 1200 + i), "kind": "call", "table": "T%d" % (10 + i),
         "type": types[i % len(types)], "prio": 7 - i, "age": 30 * (i + 1),
         "state": "assigned" if i else "acked", "page": 1} for i in range(n)]}


def _tickets(n=6):
    items = [{"name": "宫保鸡丁", "qty": 2, "mods": ["少辣"]},
             {"name": "Fried rice", "qty": 1},
             {"name": "Spring rolls", "qty": 3, "mods": ["no sauce"]}]
    return {"seq": 77, "station": "wok", "tickets": [
        {"id": "O%d-wok" % (100 + i), "order": "O%d" % (100 + i), "ch": "pos",
         "items": items, "age": 60 * i} for i in range(n)]}


def messages():
    """name -> encoded payload bytes, all through protocol.encode (the wire contract)."""
    e = protocol.encode
    return {
        "call raise": e("call", {"id": CALL_ID, "action": "raise", "type": "water"}),
        "call cancel": e("call", {"id": CALL_ID, "action": "cancel"}),
        "feedback seen": e("feedback", {"id": CALL_ID, "state": "seen", "by": PAGER}),
        "feedback on_the_way": e("feedback", {"id": CALL_ID, "state": "on_the_way", "by": PAGER}),
        "feedback done": e("feedback", {"id": CALL_ID, "state": "done", "by": PAGER}),
        "feedback cancelled": e("feedback", {"id": CALL_ID, "state": "cancelled"}),
        "status online": e("status", _status()),
        "status sleep": e("status", _status(False, reason="sleep")),
        "status will": e("status", {"online": False}),
        "act ack": e("act", {"id": CALL_ID, "action": "ack"}),
        "tasks (5 tasks)": e("tasks", _tasks(5)),
        "bump": e("bump", {"id": "O100-wok", "action": "bump"}),
        "tickets (6 tickets)": e("tickets", _tickets(6)),
    }


TOPIC_OF = {"call": "call", "feedback": "feedback", "status": "status", "act": "act",
            "tasks": "tasks", "bump": "bump", "tickets": "tickets"}
KIND_OF = {"call": ("table", TABLE), "feedback": ("table", TABLE), "act": ("pager", PAGER),
           "tasks": ("pager", PAGER), "bump": ("kds", KDS), "tickets": ("kds", KDS)}


# --- MQTT 3.1.1 packets (same layout as firmware/runtime/mqtt.py) ---------------
def _vlen(n):
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes((b | (0x80 if n else 0),))
        if not n:
            return out


def _ustr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def mqtt_connect(kind, dev, user, password, keepalive=60):
    will_t = protocol.topic(SITE, kind, dev, "status")
    pl = _ustr("rfm-%s-%s-%s" % (SITE, kind, dev)) + _ustr(will_t) + _ustr(b'{"online":false}')
    pl += _ustr(user) + _ustr(password)
    vh = b"\x00\x04MQTT\x04" + bytes((0x02 | 0x04 | 0x08 | 0x20 | 0x80 | 0x40,))
    vh += struct.pack("!H", keepalive)
    return b"\x10" + _vlen(len(vh) + len(pl)) + vh + pl


def mqtt_subscribe(kind, dev):
    body = struct.pack("!H", 1)
    for msg in protocol.SUBSCRIBES[kind]:
        body += _ustr(protocol.topic(SITE, kind, dev, msg)) + b"\x01"
    return b"\x82" + _vlen(len(body)) + body


def mqtt_publish(kind, dev, msg, payload, qos=1):
    t = _ustr(protocol.topic(SITE, kind, dev, msg))
    return bytes((0x30 | (qos << 1),)) + _vlen(len(t) + 2 + len(payload)) + t + b"\x00\x01" + payload


CONNACK = PUBACK = 4
SUBACK = 4 + 2          # two topics
PINGREQ = PINGRESP = DISCONNECT = 2

# --- 802.11 framing -----------------------------------------------------------------
LEGACY_OFDM = (6, 9, 12, 18, 24, 36, 48, 54)
DSSS = (1, 2, 5.5, 11)
DATA_OVERHEAD = 26 + 8 + 8 + 8 + 4   # QoS MAC hdr, CCMP hdr, LLC/SNAP, MIC, FCS
IP, TCP, UDP = 20, 20, 8
ACK_FRAME = 14


def airtime_us(nbytes, mbps):
    """PPDU duration: DSSS long preamble, legacy OFDM, or HT-mixed (long GI)."""
    if mbps in DSSS:
        return 192 + math.ceil(8 * nbytes / mbps)
    preamble = 20 if mbps in LEGACY_OFDM else 36
    return preamble + 4 * math.ceil((16 + 6 + 8 * nbytes) / (4 * mbps)) + 6  # +6 us signal ext.


def access_us(mbps):
    """DIFS + mean backoff (CWmin/2 slots) before a frame."""
    return 50 + 15.5 * 20 if mbps in DSSS else 28 + 7.5 * 9


class Link:
    """Collects frames of one exchange and turns them into airtime and charge."""

    def __init__(self, data_mbps, mgmt_mbps):
        self.data, self.mgmt = data_mbps, mgmt_mbps
        self.frames = []   # (dir, label, bytes, mbps, acked)

    def ack_rate(self, mbps):
        if mbps in DSSS:
            return mbps
        return max(r for r in LEGACY_OFDM if r <= min(24, mbps)) if mbps >= 6 else 6

    def add(self, d, label, nbytes, mgmt=False, acked=True):
        self.frames.append((d, label, nbytes, self.mgmt if mgmt else self.data, acked))

    def tcp(self, d, label, payload, opt=0):
        mss = 1460
        while True:
            seg = min(payload, mss)
            self.add(d, label, DATA_OVERHEAD + IP + TCP + opt + seg)
            payload -= seg
            if payload <= 0:
                return

    def totals(self):
        t = {"up": 0, "down": 0, "bytes": 0, "tx_us": 0.0, "rx_us": 0.0, "chan_us": 0.0,
             "tx_dsss_us": 0.0}
        for d, _label, n, rate, acked in self.frames:
            a = airtime_us(n, rate)
            ack = airtime_us(ACK_FRAME, self.ack_rate(rate)) if acked else 0
            t[d] += 1
            t["bytes"] += n
            t["chan_us"] += access_us(rate) + a + (10 + ack if acked else 0)
            if d == "up":
                t["tx_us"] += a
                t["rx_us"] += ack
                if rate in DSSS:
                    t["tx_dsss_us"] += a
            else:
                t["rx_us"] += a
                t["tx_us"] += ack
                if rate in DSSS:
                    t["tx_dsss_us"] += ack
        return t

    def tx_extra_mas(self):
        """Charge (mA*s) above the RX baseline spent transmitting."""
        t = self.totals()
        dsss = t["tx_dsss_us"]
        ofdm = t["tx_us"] - dsss
        return (dsss * (ds("tx_dsss_ma") - ds("rx_ma")) + ofdm * (ds("tx_ofdm_ma") - ds("rx_ma"))) / 1e6


def join_frames(link, dhcp):
    """Fixed BSSID/channel, open auth, WPA2-PSK 4-way handshake, then ARP."""
    link.add("up", "auth", 34, mgmt=True)
    link.add("down", "auth", 34, mgmt=True)
    link.add("up", "assoc req", 130, mgmt=True)
    link.add("down", "assoc resp", 140, mgmt=True)
    for d, eapol in (("down", 99), ("up", 121), ("down", 155), ("up", 99)):
        link.add(d, "EAPOL", 38 + eapol, mgmt=True)
    if dhcp:
        for d in ("up", "down", "up", "down"):
            link.add(d, "DHCP", DATA_OVERHEAD + IP + UDP + 300, mgmt=True, acked=(d == "down"))
    link.add("up", "gratuitous ARP", DATA_OVERHEAD + 28, mgmt=True, acked=False)
    link.add("up", "ARP who-has broker", DATA_OVERHEAD + 28, mgmt=True, acked=False)
    link.add("down", "ARP reply", DATA_OVERHEAD + 28, mgmt=True)


def mqtt_open(link, kind, dev, a):
    """TCP handshake, CONNECT/CONNACK, SUBSCRIBE/SUBACK, status online/PUBACK."""
    m = messages()
    link.tcp("up", "TCP SYN", 0, opt=4)
    link.tcp("down", "TCP SYN-ACK", 0, opt=4)
    link.tcp("up", "TCP ACK", 0)
    link.tcp("up", "CONNECT", len(mqtt_connect(kind, dev, a.mqtt_user, a.mqtt_password)))
    link.tcp("down", "CONNACK", CONNACK)
    link.tcp("up", "SUBSCRIBE", len(mqtt_subscribe(kind, dev)))
    link.tcp("down", "SUBACK", SUBACK)
    pub(link, kind, dev, "status", m["status online"])


def pub(link, kind, dev, msg, payload, up=True):
    """A QoS 1 PUBLISH and its PUBACK; the PUBACK's own TCP ACK is a pure segment."""
    d1, d2 = ("up", "down") if up else ("down", "up")
    link.tcp(d1, "PUBLISH " + msg, len(mqtt_publish(kind, dev, msg, payload)))
    link.tcp(d2, "PUBACK", PUBACK)
    link.tcp(d1, "TCP ACK", 0)


def mqtt_close(link, kind, dev):
    pub(link, kind, dev, "status", messages()["status sleep"])
    link.tcp("up", "DISCONNECT", DISCONNECT)
    link.tcp("down", "TCP ACK", 0)
    link.tcp("up", "FIN", 0)
    link.tcp("down", "FIN", 0)
    link.tcp("up", "TCP ACK", 0)


# --- table button ----------------------------------------------------------------------
def sleep_floor_ua(a):
    divider = 3.7 / 2.0  # 3.7 V across 2 x 1 MOhm, in uA
    return (ds("deep_sleep_ua") + ds("ldo_iq_ua") + ds("protector_ua") + ds("charger_leak_ua")
            + divider)


def connected_idle_ma(a):
    """Wi-Fi modem sleep (MicroPython's default PM): CPU on + one beacon per DTIM."""
    return ds("cpu160_ma") + ds("rx_ma") * a.beacon_ms / (102.4 * a.dtim)


def background(link_rate, kind, dev, a, what):
    """Charge (mA*s) of one exchange while connected in modem sleep."""
    link = Link(*link_rate)
    m = messages()
    if what == "heartbeat":
        pub(link, kind, dev, "status", m["status online"])
        link.tcp("up", "PINGREQ", PINGREQ)
        link.tcp("down", "PINGRESP", PINGRESP)
    else:
        msg = what.split()[0]
        pub(link, kind, dev, msg, m[what], up=(msg in ("call", "act", "bump", "status")))
    t = link.totals()
    radio_s = a.tail_ms / 1000 + (t["tx_us"] + t["rx_us"]) / 1e6
    return radio_s * (ds("rx_ma") - connected_idle_ma(a)) + link.tx_extra_mas(), link


def table_wake(a, scenario):
    """One wake from deep sleep for a press: returns (mAs, seconds awake, Link)."""
    rate = (a.phy_mbps, a.mgmt_mbps)
    link = Link(*rate)
    join_frames(link, a.dhcp)
    mqtt_open(link, "table", TABLE, a)
    m = messages()
    pub(link, "table", TABLE, "call", m["call raise"])
    mqtt_close(link, "table", TABLE)
    rtts = 7  # TCP, CONNECT, SUBSCRIBE, status, call, status sleep, DISCONNECT/FIN
    t_active = rtts * a.rtt_ms / 1000
    t_join = a.join_s + (a.dhcp_s if a.dhcp else 0)
    if scenario == "awake_until_closed":
        t_idle = a.open_s + a.sleep_after_s
        bg = ["feedback seen", "feedback on_the_way", "feedback done"]
        bg += ["heartbeat"] * int(t_idle // a.hb_s)
    else:
        t_idle = a.listen_s
        bg = ["feedback seen"]
    mas = a.boot_s * ds("cpu_boot_ma")
    mas += (t_join + t_active) * ds("rx_ma") + link.tx_extra_mas()
    mas += t_idle * connected_idle_ma(a)
    for what in bg:
        mas += background(rate, "table", TABLE, a, what)[0]
    awake = a.boot_s + t_join + t_active + t_idle
    mas += awake * a.led_ma
    return mas, awake, link


def table_checkin(a):
    """A timer wake that only reconnects, says online, then sleeps (no press)."""
    link = Link(a.phy_mbps, a.mgmt_mbps)
    join_frames(link, a.dhcp)
    mqtt_open(link, "table", TABLE, a)
    mqtt_close(link, "table", TABLE)
    t = a.join_s + (a.dhcp_s if a.dhcp else 0) + 6 * a.rtt_ms / 1000
    return a.boot_s * ds("cpu_boot_ma") + t * ds("rx_ma") + link.tx_extra_mas()


def table_budget(a):
    rows = []
    usable = a.capacity_mah * a.usable
    self_dis = a.capacity_mah * a.self_discharge / 100 / 30.4  # mAh/day
    sleep = sleep_floor_ua(a) * 24 / 1000
    checkins = a.checkins * table_checkin(a) / 3600
    for scenario, label in (("awake_until_closed", "firmware as written: awake until call done"),
                            ("sleep_after_seen", "sleep after 'seen' (%.0f s listen)" % a.listen_s)):
        mas, awake, _ = table_wake(a, scenario)
        per_press = mas / 3600
        day = a.presses * per_press + sleep + self_dis + checkins
        rows.append({"scenario": scenario, "label": label, "mah_press": per_press,
                     "awake_s": awake, "press_day": a.presses * per_press, "sleep_day": sleep,
                     "self_day": self_dis, "checkin_day": checkins, "mah_day": day,
                     "days": usable / day})
    return rows


# --- waiter pager ------------------------------------------------------------------------
def pager_budget(a):
    rate = (a.phy_mbps, a.mgmt_mbps)
    per_h = {"heartbeat": 3600 / a.hb_s, "tasks (5 tasks)": a.tasks_per_h,
             "act ack": a.acts_per_h}
    bg = sum(n * background(rate, "pager", PAGER, a, w)[0] for w, n in per_h.items())
    idle = connected_idle_ma(a)
    rows = []
    for label, oled_duty in (("firmware as written: OLED always on", 1.0),
                             ("OLED off 10 s after last event", min(1.0, 10 * (a.tasks_per_h + a.acts_per_h) / 3600))):
        ma = (idle + a.oled_ma * oled_duty + a.draw_ma * oled_duty + bg / 3600
              + ds("motor_ma") * a.tasks_per_h * a.vibe_s / 3600)
        hours = a.pager_mah * a.usable / ma
        rows.append({"label": label, "ma": ma, "hours": hours, "shifts": hours / a.shift_h})
    off_ua = 0.1 + ds("charger_leak_ua") + 3.7 / 2.0  # LDO disabled by the switch
    return rows, idle, bg / 3600, off_ua


# --- kitchen displays ------------------------------------------------------------------
def kitchen_budget(a):
    idle = connected_idle_ma(a)
    epd = ds("epd_refresh_mw") / 3.3 * ds("epd_refresh_s") * a.kds_updates_per_h / 3600
    buzz = a.buzzer_ma * a.beeps_per_h * a.beep_s / 3600  # from 5 V
    rows = []
    eink_3v3 = idle + epd
    lcd_3v3 = idle
    for name, i3, i5, peak in (("kitchen_eink", eink_3v3, buzz, ds("tx_peak_ma") + 8 + a.buzzer_ma),
                               ("kitchen_lcd", lcd_3v3, buzz + a.backlight_ma + a.lcd_logic_ma,
                                ds("tx_peak_ma") + a.backlight_ma + a.lcd_logic_ma + a.buzzer_ma)):
        ma5 = i3 + i5  # linear LDO: input current = output current
        rows.append({"name": name, "ma5": ma5, "w": ma5 * 5 / 1000,
                     "kwh_year": ma5 * 5 / 1000 * 24 * 365 / 1000, "peak_ma5": peak})
    return rows


# --- report ----------------------------------------------------------------------------
def table(headers, rows):
    w = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w[i]) for i, h in enumerate(headers)) + " |"
    out = [line, "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |")
    return "\n".join(out)


def report(a):
    p = []
    m = messages()
    p.append("## Message sizes (protocol.encode) and airtime at %g Mbps data / %g Mbps management"
             % (a.phy_mbps, a.mgmt_mbps))
    rows = []
    for name, payload in m.items():
        msg = name.split()[0]
        kind, dev = KIND_OF.get(msg, ("table", TABLE))
        pkt = len(mqtt_publish(kind, dev, TOPIC_OF[msg], payload))
        segs = math.ceil(pkt / 1460)
        frame = DATA_OVERHEAD + IP + TCP + pkt + (segs - 1) * (DATA_OVERHEAD + IP + TCP)
        us = sum(airtime_us(DATA_OVERHEAD + IP + TCP + min(1460, pkt - 1460 * i), a.phy_mbps)
                 for i in range(segs))
        rows.append((name, len(payload), pkt, frame, us))
    p.append(table(("message", "JSON B", "MQTT PUBLISH B", "802.11 B", "airtime us"), rows))
    rows = [("CONNECT (client id, will, user, password)", len(mqtt_connect("table", TABLE, a.mqtt_user, a.mqtt_password))),
            ("SUBSCRIBE feedback+cmd", len(mqtt_subscribe("table", TABLE))),
            ("CONNACK / PUBACK", 4), ("SUBACK (2 topics)", SUBACK), ("PINGREQ / PINGRESP / DISCONNECT", 2)]
    p.append("")
    p.append(table(("MQTT control packet", "bytes"), rows))
    p.append("Per TCP segment on air: %d B = QoS MAC 26 + CCMP 8+8 + LLC/SNAP 8 + FCS 4 + IPv4 20 + TCP 20."
             % (DATA_OVERHEAD + IP + TCP))

    _, _, link = table_wake(a, "sleep_after_seen")
    t = link.totals()
    p.append("")
    p.append("## One table-button press, deep sleep to deep sleep (%s)" %
             ("DHCP" if a.dhcp else "static IP, fixed channel and BSSID"))
    p.append("Frames: %d up, %d down, %d bytes on air (+ 'seen' feedback and any heartbeats). "
             "Device TX airtime %.2f ms, RX airtime %.2f ms, channel time incl. DIFS/backoff/ACK %.2f ms."
             % (t["up"], t["down"], t["bytes"], t["tx_us"] / 1000, t["rx_us"] / 1000, t["chan_us"] / 1000))
    p.append("Radio-on time is set by association (%.2f s) and round trips (7 x %d ms), not by bytes."
             % (a.join_s + (a.dhcp_s if a.dhcp else 0), a.rtt_ms))
    p.append("")
    rows = []
    res = table_budget(a)
    for r in res:
        rows.append((r["label"], "%.1f" % r["awake_s"], "%.4f" % r["mah_press"],
                     "%.2f" % r["press_day"], "%.2f" % r["sleep_day"], "%.2f" % r["self_day"],
                     "%.2f" % r["checkin_day"], "%.2f" % r["mah_day"],
                     "%.0f d (%.1f months)" % (r["days"], r["days"] / 30.4)))
    p.append("## Table button: %d presses/day, %d mAh x %.2f usable" % (a.presses, a.capacity_mah, a.usable))
    p.append(table(("scenario", "awake s/press", "mAh/press", "presses mAh/d", "sleep mAh/d",
                    "self-disch. mAh/d", "check-ins mAh/d", "total mAh/d", "battery life"), rows))
    p.append("Deep-sleep floor %.1f uA = ESP32 %d + LDO %d + protector %d + charger leak %d + divider %.1f."
             % (sleep_floor_ua(a), ds("deep_sleep_ua"), ds("ldo_iq_ua"), ds("protector_ua"),
                ds("charger_leak_ua"), 3.7 / 2))
    p.append("Connected idle (modem sleep, DTIM%d) %.1f mA; LED %.1f mA while awake."
             % (a.dtim, connected_idle_ma(a), a.led_ma))

    prow, idle, bg, off_ua = pager_budget(a)
    p.append("")
    p.append("## Waiter pager: %d mAh x %.2f, %g tasks/h, %g acts/h, heartbeat+ping every %d s"
             % (a.pager_mah, a.usable, a.tasks_per_h, a.acts_per_h, a.hb_s))
    p.append(table(("scenario", "average mA", "hours per charge", "%g h shifts per charge" % a.shift_h),
                   [(r["label"], "%.1f" % r["ma"], "%.1f" % r["hours"], "%.1f" % r["shifts"]) for r in prow]))
    p.append("Connected idle %.1f mA, message traffic %.2f mA, motor %.2f mA, OLED %.1f mA when on. "
             "Switched off: %.1f uA." % (idle, bg, ds("motor_ma") * a.tasks_per_h * a.vibe_s / 3600,
                                        a.oled_ma, off_ua))

    p.append("")
    p.append("## Kitchen displays (5 V USB)")
    krows = kitchen_budget(a)
    p.append(table(("device", "average mA @5 V", "average W", "kWh/year", "peak mA @5 V"),
                   [(r["name"], "%.0f" % r["ma5"], "%.2f" % r["w"], "%.1f" % r["kwh_year"],
                     "%.0f" % r["peak_ma5"]) for r in krows]))
    return "\n".join(p)


def csv_report(a):
    out = ["device,scenario,presses_per_day,mah_per_day,life_days"]
    for r in table_budget(a):
        out.append("table_button,%s,%d,%.3f,%.1f" % (r["scenario"], a.presses, r["mah_day"], r["days"]))
    rows, _, _, _ = pager_budget(a)
    for r in rows:
        out.append("waiter_pager,%s,,%.3f,%.2f" % (r["label"].split(":")[0].replace(" ", "_"),
                                                   r["ma"] * 24, r["hours"] / 24))
    return "\n".join(out)


def parse(argv=None):
    ap = argparse.ArgumentParser(
        description="Power budget of the table button, waiter pager and kitchen displays, "
                    "from protocol message sizes and ESP32 datasheet currents.")
    g = ap.add_argument_group("table button")
    g.add_argument("--presses", type=int, default=40, help="call presses per day (default 40)")
    g.add_argument("--capacity-mah", type=float, default=3200, help="cell capacity (NCR18650B, default 3200)")
    g.add_argument("--open-s", type=float, default=120,
                   help="assumed time a call stays open (raise to done), firmware stays awake (default 120)")
    g.add_argument("--sleep-after-s", type=float, default=10, help="config 'sleep' idle delay (default 10)")
    g.add_argument("--listen-s", type=float, default=3, help="listen window for 'seen' when sleeping early (default 3)")
    g.add_argument("--checkins", type=float, default=0, help="timer wakes per day just to report online (default 0)")
    g.add_argument("--led-ma", type=float, default=1.0, help="average LED current while awake (default 1.0)")
    g = ap.add_argument_group("waiter pager")
    g.add_argument("--pager-mah", type=float, default=1200, help="LiPo capacity (Adafruit 258, default 1200)")
    g.add_argument("--shift-h", type=float, default=8, help="shift length in hours (default 8)")
    g.add_argument("--tasks-per-h", type=float, default=30, help="tasks messages received per hour (default 30)")
    g.add_argument("--acts-per-h", type=float, default=30, help="ack/done presses per hour (default 30)")
    g.add_argument("--vibe-s", type=float, default=0.5, help="motor on-time per tasks message (default 0.5)")
    g.add_argument("--oled-ma", type=float, default=10, help="OLED module current when on, assumption (default 10)")
    g.add_argument("--draw-ma", type=float, default=0.3, help="CPU/I2C cost of 1 s screen redraws (default 0.3)")
    g = ap.add_argument_group("kitchen displays")
    g.add_argument("--kds-updates-per-h", type=float, default=60, help="e-paper full refreshes per hour (default 60)")
    g.add_argument("--backlight-ma", type=float, default=80, help="LCD backlight at 5 V, assumption (default 80)")
    g.add_argument("--lcd-logic-ma", type=float, default=6, help="ILI9341 logic, assumption (default 6)")
    g.add_argument("--buzzer-ma", type=float, default=10, help="piezo drive current (default 10)")
    g.add_argument("--beeps-per-h", type=float, default=20, help="beeps per hour (default 20)")
    g.add_argument("--beep-s", type=float, default=0.5, help="beep length (default 0.5)")
    g = ap.add_argument_group("radio and network (assumptions)")
    g.add_argument("--phy-mbps", type=float, default=24, help="data PHY rate: 802.11g 6..54 or 11n e.g. 65 (default 24)")
    g.add_argument("--mgmt-mbps", type=float, default=1, help="rate of auth/assoc/EAPOL/ARP frames (default 1, DSSS)")
    g.add_argument("--boot-s", type=float, default=0.4, help="deep-sleep wake to app running (default 0.4)")
    g.add_argument("--join-s", type=float, default=1.2,
                   help="Wi-Fi start + assoc + WPA2 + ARP, static IP, fixed channel/BSSID (default 1.2)")
    g.add_argument("--dhcp", action="store_true", help="use DHCP instead of a static IP")
    g.add_argument("--dhcp-s", type=float, default=1.0, help="extra time DHCP takes (default 1.0)")
    g.add_argument("--rtt-ms", type=float, default=20, help="round trip to the hub's broker (default 20)")
    g.add_argument("--tail-ms", type=float, default=20, help="radio-on time per exchange in modem sleep (default 20)")
    g.add_argument("--beacon-ms", type=float, default=3, help="radio-on per beacon in modem sleep (default 3)")
    g.add_argument("--dtim", type=int, default=1, help="AP DTIM period (default 1)")
    g.add_argument("--hb-s", type=float, default=30, help="heartbeat and keepalive-ping period (default 30)")
    g.add_argument("--mqtt-user", default="T12", help="broker user name (size only)")
    g.add_argument("--mqtt-password", default="x" * 16, help="broker password (size only)")
    g = ap.add_argument_group("battery")
    g.add_argument("--usable", type=float, default=0.85, help="usable fraction of capacity (default 0.85)")
    g.add_argument("--self-discharge", type=float, default=2.0, help="cell self-discharge %%/month (default 2)")
    ap.add_argument("--csv", action="store_true", help="print a CSV summary instead of the tables")
    a = ap.parse_args(argv)
    if a.presses < 0 or a.capacity_mah <= 0 or not 0 < a.usable <= 1:
        ap.error("presses must be >= 0, capacity > 0, 0 < usable <= 1")
    return a


def main(argv=None):
    a = parse(argv)
    print(csv_report(a) if a.csv else report(a))


if __name__ == "__main__":
    main()
