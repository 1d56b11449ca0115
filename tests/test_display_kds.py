"""Kitchen display rendering (display/kds*.py, display/font.py, display/canvas.py):
pixels on CPython, the same frames byte for byte under MicroPython, the font build,
and the hub's PNG previews."""
import hashlib
import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from display import canvas, font, fontgen, kds, kds_lcd
from display.kds import c565
from tests.simdev import HEAP, bundle, micropython, mp_env
from tests.service import FakeBus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F = font.default()
RED = c565(220, 0, 0)
ACKED = c565(90, 0, 0)
GREEN, AMBER = kds_lcd.Layout.HEAD[0][0], kds_lcd.Layout.HEAD[1][0]
MISSING = "鳕"  # not in display/kitchen_words.txt, so not in the font

TICKETS = [
    {"id": "O1-wok", "order": "O1", "ch": "pos", "num": "1001", "table": "T3",
     "items": [{"name": "宫保鸡丁", "qty": 2, "mods": ["不要辣", "加饭"]},
               {"name": "Kung Pao with a long English name", "qty": 1, "changed": True},
               {"name": "麻婆豆腐", "qty": 1, "void": True}],
     "note": "打包 快", "allergy": "花生 peanuts", "also": ["cold", "pastry"], "age": 65},
    {"id": "O2-wok", "order": "O2", "ch": "meituan", "items": [{"name": "小笼包", "qty": 3},
                                                              {"name": MISSING + "鱼", "qty": 1}],
     "allergy": "海鲜", "allergy_ack": True, "age": 330, "changed": True},
    {"id": "O3-wok", "order": "O3", "ch": "mini", "items": [{"name": "蛋挞", "qty": 6}], "age": 500},
]


def render(name, tickets=TICKETS, ages=None, sel=0, online=True, warn=300, late=480, more=0):
    L = kds.layout(name, warn, late)
    panel = canvas.Panel(L.width, L.height, L.fmt)
    view = kds.View(L, F, panel)
    view.draw("热菜", tickets, ages or [t["age"] for t in tickets], lambda t: t.get("allergy_ack"), sel, online,
              full=True, more=more)
    return L, panel, view


def count(fb, x, y, w, h, colour):
    return sum(1 for yy in range(y, y + h) for xx in range(x, x + w) if fb.pixel(xx, yy) == colour)


def glyph_bits(ch):
    """The font file's 16x16 bitmap of ch as rows of 0/1."""
    v = F.find(ord(ch))
    assert v >= 256, "%r is not in the font" % ch
    bits = F.load((v >> 8) - 1)
    return [[(bits[2 * r + c // 8] >> (7 - c % 8)) & 1 for c in range(16)] for r in range(16)]


# --- the font ---------------------------------------------------------------------
def test_cjk_glyph_is_drawn_from_the_font_and_a_missing_one_as_a_box():
    fb = canvas.FrameBuffer(bytearray(40 * 16 * 2), 40, 16, canvas.RGB565)
    pal = canvas.FrameBuffer(bytearray(4), 2, 1, canvas.RGB565)
    white = c565(255, 255, 255)
    pal.pixel(0, 0, 0)
    pal.pixel(1, 0, white)
    end = F.draw(fb, "宫" + MISSING, 0, 0, white, pal, 0, 40)
    assert end == 32  # both full width
    want = glyph_bits("宫")
    got = [[1 if fb.pixel(c, r) == white else 0 for c in range(16)] for r in range(16)]
    assert got == want and sum(map(sum, want)) > 40  # a real glyph, not a box or nothing
    box = [[1 if fb.pixel(16 + c, r) == white else 0 for c in range(16)] for r in range(16)]
    edge = [[1 if (r in (1, 14) and 1 <= c <= 14) or (c in (1, 14) and 1 <= r <= 14) else 0
             for c in range(16)] for r in range(16)]
    assert box == edge  # the placeholder: a hollow box, never dropped
    assert F.find(ord(MISSING)) & 0xFF == 16 and F.find(ord(MISSING)) < 256


def test_font_lookup_covers_ascii_and_the_kitchen_words():
    with open(os.path.join(ROOT, "display", "kitchen_words.txt"), encoding="utf-8") as f:
        words = fontgen.chars_of([f.read()])
    assert len(words) > 200
    for ch in words + [chr(c) for c in range(0x20, 0x7F)]:
        assert F.find(ord(ch)) >= 256, ch
    assert F.width("ab宫") == 8 + 8 + 16


def test_fontgen_takes_extra_texts_and_rebuilds_the_shipped_font(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "display", "fontgen.py"), "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--text-file" in out.stdout
    menu = tmp_path / "menu.json"
    menu.write_text(json.dumps({"items": {MISSING + "鱼": "wok"}}, ensure_ascii=False), encoding="utf-8")
    path = tmp_path / "f.bin"
    assert fontgen.main(["-o", str(path), "--no-words", "--text-file", str(menu), "--text", "鲈"]) == 0
    small = font.Font(str(path))
    assert small.n == 95 + 3 and all(small.find(ord(c)) >= 256 for c in MISSING + "鱼鲈")
    assert small.find(ord("宫")) < 256
    shipped = tmp_path / "shipped.bin"
    fontgen.main(["-o", str(shipped)])
    with open(os.path.join(ROOT, "display", "font16.bin"), "rb") as f:
        assert shipped.read_bytes() == f.read(), "display/font16.bin is stale: run python display/fontgen.py"


# --- layouts ---------------------------------------------------------------------
def test_lcd_allergy_banner_is_red_until_acknowledged():
    L, panel, _ = render("lcd")
    top = L.bar + L.head + 2
    # first card: unacknowledged allergy, two banner lines (text + "BUMP = ACK") in red
    assert count(panel.fb, 4, top, 150, 2 * kds.LH, RED) > 0.6 * 150 * 2 * kds.LH
    # second card: acknowledged, the banner turns dark red and no bright red is left
    assert count(panel.fb, 164, top, 150, 2 * kds.LH, ACKED) > 0.5 * 150 * 2 * kds.LH
    assert count(panel.fb, 162, top, 154, 200, RED) == 0
    _, plain, _ = render("lcd", [dict(TICKETS[0], allergy=None)])
    assert count(plain.fb, 2, top, 154, 200, RED) == 0


def test_eink_allergy_banner_is_inverse():
    L, panel, _ = render("eink")
    top = L.bar + L.head + 2
    black = count(panel.fb, 4, top, 120, 3 * kds.LH, 0)
    assert black > 0.6 * 120 * 3 * kds.LH  # white text on black: three banner lines
    assert count(panel.fb, 4, top + 3 * kds.LH + 2, 120, kds.LH - 4, 0) < 0.3 * 120 * (kds.LH - 4)


@pytest.mark.parametrize("warn,late", [(300, 480), (60, 120)])
def test_lcd_ageing_colours_at_the_thresholds(warn, late):
    for age, colour in ((warn - 1, GREEN), (warn, AMBER), (late - 1, AMBER), (late, RED)):
        L, panel, _ = render("lcd", TICKETS[1:], [age, 0], sel=1, warn=warn, late=late)
        assert panel.fb.pixel(100, L.bar + 5) == colour, (age, warn, late)  # card 1's head


def test_eink_ageing_is_an_inverse_marker():
    def head(age):
        L, panel, _ = render("eink", TICKETS[1:], [age, 0], sel=1)
        y = L.bar + 5
        return panel.fb.pixel(105, y), panel.fb.pixel(100, y)  # card 1: timer box, head
    assert head(299) == (1, 1)  # paper
    assert head(300) == (0, 1)  # the timer turns inverse
    assert head(480) == (0, 0)  # the whole head is inverse


def test_eink_redraws_only_the_cells_that_changed():
    L, panel, view = render("eink")
    acked = lambda t: t.get("allergy_ack")
    ages = [t["age"] for t in TICKETS]
    assert view.draw("热菜", TICKETS, ages, acked, 0, True, gen=1) == []  # nothing changed
    ages[2] += 60  # a minute later on the third card: its head only
    assert view.draw("热菜", TICKETS, ages, acked, 0, True, gen=1) == [(272, 20, 128, 20)]
    before = len(panel.pushes)
    assert view.draw("热菜", TICKETS, ages, acked, 0, False, gen=1) == [(0, 0, 400, 20)]  # link lost
    assert panel.pushes[before:] == [(0, 0, 400, 13), (0, 13, 400, 7)]  # the bar, in two bands
    changed = view.draw("热菜", TICKETS, ages, acked, 1, False, gen=2)  # selection moved to card 2
    assert changed == [(0, 20, 136, 20), (0, 40, 136, 260), (136, 20, 136, 20), (136, 40, 136, 260)]
    assert all(x % 8 == 0 and w % 8 == 0 for x, _, w, _ in changed)  # e-paper RAM windows


def test_card_lines_mark_changed_void_mods_note_and_also():
    st, lines = kds.card_lines(F, TICKETS[0], False, 124)
    assert lines[0].startswith("!过敏 花生") and lines[st.index("i")] == "2x 宫保鸡丁"
    assert st[0] == "b" and "BUMP = ACK" in lines
    assert lines[st.index("c")].startswith("*1x Kung Pao")  # changed
    assert lines[st.index("v")] == "-1x 麻婆豆腐" and "v" in kds.STRUCK  # void: struck through
    assert [lines[i] for i, s in enumerate(st) if s == "m"] == ["- 不要辣", "- 加饭"]
    assert lines[st.index("n")] == "Note: 打包 快" and lines[st.index("a")].startswith("also: cold")
    assert all(F.width(t) + kds.INDENT[kds.STYLE.find(s)] <= 124 for s, t in zip(st, lines))  # wrapped to fit
    st2, _ = kds.card_lines(F, TICKETS[0], True, 124)
    assert st2[0] == "k"


def test_status_bar_counts_and_offline_marker():
    L, panel, view = render("lcd", online=False, more=5)
    assert view.status == "热菜  1-2/3 +5"
    assert count(panel.fb, L.width - 76, 1, 74, L.bar - 2, RED) > 300  # the red OFFLINE box


# --- the same frames under MicroPython ---------------------------------------------
MP_RENDER = """
import sys, json
from display import font, kds
from boards.sim import _Panel
cases = json.loads(open(sys.argv[1]).read())
for i, (name, sel, warn, late) in enumerate(cases["views"]):
    L = kds.layout(name, warn, late)
    p = _Panel("frame%d.raw" % i, name, L.width, L.height)
    v = kds.View(L, font.default(), p)
    v.draw("热菜", cases["tickets"], [t["age"] for t in cases["tickets"]], lambda t: t.get("allergy_ack"),
           sel, sel == 0, None, True, 3)
    p.f.close()
    print(i, p.pushes)
"""


def test_micropython_draws_byte_identical_frames(tmp_path):
    views = [("lcd", 0, 300, 480), ("lcd", 2, 60, 120), ("eink", 0, 300, 480), ("eink", 1, 600, 900)]
    (tmp_path / "cases.json").write_text(json.dumps({"views": views, "tickets": TICKETS}, ensure_ascii=False),
                                         encoding="utf-8")
    (tmp_path / "render.py").write_text(MP_RENDER, encoding="utf-8")
    path = bundle("kitchen_display")
    r = subprocess.run([micropython(), "-X", "heapsize=" + HEAP, str(tmp_path / "render.py"),
                        str(tmp_path / "cases.json")], cwd=str(tmp_path), env=mp_env(path),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for i, (name, sel, warn, late) in enumerate(views):
        L = kds.layout(name, warn, late)
        panel = canvas.Panel(L.width, L.height, L.fmt)
        kds.View(L, F, panel).draw("热菜", TICKETS, [t["age"] for t in TICKETS], lambda t: t.get("allergy_ack"),
                                   sel, sel == 0, None, True, 3)
        device = (tmp_path / ("frame%d.raw" % i)).read_bytes()
        assert hashlib.sha256(device).hexdigest() == hashlib.sha256(bytes(panel.fb.buf)).hexdigest(), views[i]
        assert len(set(device)) > 2  # a real picture, not a blank panel


# --- PNG ---------------------------------------------------------------------------
def test_png_round_trips_through_pillow():
    L, panel, _ = render("lcd")
    im = Image.open(io.BytesIO(canvas.png(panel.fb))).convert("RGB")
    assert im.size == (320, 240)
    assert im.getpixel((260, L.bar + 5)) == canvas.rgb(AMBER)  # card 2 is 5 minutes old
    assert im.getpixel((10, L.bar + L.head + 3)) == canvas.rgb(RED)
    _, mono, _ = render("eink")
    im = Image.open(io.BytesIO(canvas.png(mono.fb))).convert("L")
    assert im.getpixel((200, 5)) == 0 and im.getpixel((60, 290)) == 255


# --- the hub's previews ------------------------------------------------------------
@pytest.fixture
def hub(tmp_path):
    from hub.api import create_app
    from hub.core import Hub
    from hub.floor_api import in_core
    from hub.store import Store
    store = Store(tmp_path / "hub.sqlite3")
    h = Hub(store, "demo")
    h.bus = FakeBus()
    h.start()
    for kind, dev in (("kds", "wok"), ("kds", "pastry"), ("pager", "P1")):
        in_core(h, h.uplink, kind, dev, "status", {"online": True, "hb": 30})
    yield h, create_app(h).test_client()
    h.stop()
    store.close()


def png_of(client, path, code=200):
    resp = client.get(path)
    assert resp.status_code == code, resp.data[:200]
    if code != 200:
        return resp.json
    assert resp.mimetype == "image/png"
    return Image.open(io.BytesIO(resp.data)).convert("RGB")


def test_hub_renders_a_kitchen_display_and_a_pager_as_png(hub):
    h, client = hub
    order = {"channel": "pos", "ref": "A-1", "number": "1001", "allergy": "花生过敏",
             "items": [{"id": "1", "name": "宫保鸡丁", "qty": 2, "mods": ["少辣"]},
                       {"id": "2", "name": "蛋挞", "qty": 6}]}
    resp = client.post("/api/orders", data=json.dumps(order, ensure_ascii=False).encode(),
                       content_type="application/json")
    assert resp.status_code == 201, resp.json
    snap = h.stations.snapshot("wok")
    assert [t["items"][0]["name"] for t in snap["tickets"]] == ["宫保鸡丁"]
    im = png_of(client, "/api/displays/wok/screen.png")
    L, panel, _ = render("lcd", snap["tickets"], [0], warn=snap["warn"], late=snap["late"])
    assert im.size == (320, 240)
    top = L.bar + L.head + 2
    banner = sum(1 for x in range(4, 150) for y in range(top, top + kds.LH) if im.getpixel((x, y)) == canvas.rgb(RED))
    assert banner > 0.6 * 146 * kds.LH  # the allergy banner
    # the dish name: the same pixels as display/ draws them for this ticket
    st, _ = kds.card_lines(F, snap["tickets"][0], False, L.slots[0][2] - 4)
    y = top + st.index("i") * kds.LH + 1
    want = Image.open(io.BytesIO(canvas.png(panel.fb))).convert("RGB").crop((4, y, 150, y + 16))
    assert im.crop((4, y, 150, y + 16)).tobytes() == want.tobytes()
    eink = png_of(client, "/api/displays/pastry/screen.png?layout=eink")
    assert eink.size == (400, 300) and eink.getpixel((200, 5)) == (0, 0, 0)  # the inverse status bar
    pager = png_of(client, "/api/displays/P1/screen.png")
    assert pager.size == (128, 64) and pager.getpixel((0, 10)) == (255, 255, 255)  # its header rule
    assert "no kitchen display or pager" in png_of(client, "/api/displays/T9/screen.png", 404)["error"]
    assert "layout" in png_of(client, "/api/displays/wok/screen.png?layout=oled", 400)["error"]


def test_the_hub_demo_menu_is_in_the_font():
    from hub.stations import DEMO_MENU
    missing = [c for c in fontgen.chars_of(fontgen.json_strings(DEMO_MENU)) if F.find(ord(c)) < 256]
    assert missing == [], "add them to display/kitchen_words.txt and run make font"
