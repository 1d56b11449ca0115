# Kitchen display screens, e-ink 400x300 mono and LCD 320x240 colour (the panel
# types are display/kds_eink.py and display/kds_lcd.py). The screen
# is split into fixed cells (status bar, each slot's head and body); only cells
# whose content changed are redrawn, each in bands small enough for a fragmented
# heap, and pushed to the panel. Same code on the device (framebuf) and the hub
# (display.canvas).
try:
    import framebuf
except ImportError:
    from display import canvas as framebuf

GH = 16  # glyph height
LH = 17  # line pitch
WARN_S = 300
LATE_S = 480


def c565(r, g, b):
    """Byte-swapped RGB565: the buffer's bytes are in the panel's (big-endian) order."""
    v = ((r & 0xF8) << 8) | ((g & 0xFC) << 3) | (b >> 3)
    return ((v & 0xFF) << 8) | (v >> 8)


class Layout:
    """What a panel type defines (display/kds_eink.py, display/kds_lcd.py): size,
    framebuf format, bytes per pixel (0: 8 pixels a byte), bar and head heights,
    slots (cell x, cell width, card width), band buffer bytes, colour mask, BG, FG,
    ROLES (background or None, foreground) for "bar", "off", "frame", "border" and
    the body line styles (STYLE), HEAD and TIMER one pair per age level."""

    def __init__(self, warn=WARN_S, late=LATE_S):
        self.warn = warn
        self.late = late

    def level(self, age):
        return 2 if age >= self.late else 1 if age >= self.warn else 0

    def timer(self, age):
        if age >= 3600:
            return "%dh%02d" % (age // 3600, age // 60 % 60)
        return "%dm" % (age // 60)  # minutes: a redraw a minute, not a second


NAMES = ("eink", "lcd")


def layout(name, warn=WARN_S, late=LATE_S):
    """The layout of a panel type; only its module is loaded (heap on the device)."""
    if name not in NAMES:
        raise ValueError("layout must be one of %s" % ", ".join(NAMES))
    return __import__("display.kds_" + name, None, None, ["Layout"]).Layout(warn, late)


def wrap(font, s, w, w2=0):
    """Lines of at most w px (w2 after the first), broken at a late enough space."""
    out = []
    line = ""
    lw = 0
    for ch in s:
        cw = font.find(ord(ch)) & 0xFF
        if lw + cw > ((w2 or w) if out else w) and line:
            cut = line.rfind(" ")
            if cut <= len(line) // 2:
                cut = len(line)
            out.append(line[:cut])
            line = line[cut + 1:]
            lw = font.width(line)
            if ch == " " and not line:
                continue
        line += ch
        lw += cw
    if line or not out:
        out.append(line)
    return out


# Body line styles, a letter each: b allergy banner, k acknowledged banner, i item,
# j its next lines, c changed item, d its next lines, v void item, w its next lines,
# m modifier, x modifier of a void item, n note, a also at. A layout's ROLES give
# colours by these letters; INDENT the x offset; STRUCK are struck through.
STYLE = "bkijcdvwmxna"
INDENT = b"\x04\x04\x02\x1a\x02\x1a\x02\x1a\x12\x12\x02\x02"
STRUCK = "vwx"


def card_lines(font, t, acked, w):
    """The body of a ticket: (style letters as a str, [line text])."""
    st = ""
    out = []

    def add(style, lines):
        nonlocal st
        st += style * len(lines)
        out.extend(lines)

    if t.get("allergy"):
        add("k" if acked else "b", wrap(font, "!过敏 " + t["allergy"], w - 8) + ["ACK ok" if acked else "BUMP = ACK"])
    for it in t["items"]:
        void = it.get("void")
        s = "vw" if void else "cd" if it.get("changed") else "ij"
        lines = wrap(font, "%s%dx %s" % ("-" if void else "*" if it.get("changed") else "", it["qty"], it["name"]),
                     w - 4, w - 28)
        add(s[0], lines[:1])
        add(s[1], lines[1:])
        for m in it.get("mods") or ():
            add("x" if void else "m", wrap(font, "- " + m, w - 20))
    if t.get("note"):
        add("n", wrap(font, "Note: " + t["note"], w - 4))
    if t.get("also"):
        add("a", wrap(font, "also: " + ", ".join(t["also"]), w - 4))
    return st, out


def head_text(t):
    """'#<number> <table or channel>', ' CHG' when the order was modified."""
    return "#%s %s%s" % (t.get("num") or t["order"], t.get("table") or t["ch"], " CHG" if t.get("changed") else "")


class View:
    """Draws scenes on a panel with .push(x, y, w, h, buf) and .refresh(rects).
    tickets: a sequence of ticket dicts (only the shown ones are read)."""

    def __init__(self, layout, font, panel):
        self.L = layout
        self.font = font
        self.panel = panel
        self.buf = bytearray(layout.band)
        self.pal = framebuf.FrameBuffer(bytearray(4), 2, 1, layout.fmt)
        self.sigs = {}
        self.cards = []  # (ticket id, head text, body lines, selected) per shown slot
        self.ages = []
        self.key = None
        self.status = ""
        self.online = True
        self.fb = None
        self.ox = self.oy = self.bh = 0

    def draw(self, station, tickets, ages, acked, sel, online, gen=None, full=False, more=0):
        """Redraw the cells that changed (all with full); return their rects.
        Shown tickets are read again only when gen (bumped by the caller on any
        change but time) differs from the last call, or is None. more: open
        tickets the hub left out of the snapshot."""
        L = self.L
        k = len(L.slots)
        n = len(tickets)
        first = sel // k * k if n else 0
        last = min(n, first + k)
        key = (gen, first, sel, n)
        if gen is None or key != self.key:
            self.key = None
            cards = []
            for i in range(first, last):
                t = tickets[i]
                cards.append((t["id"], head_text(t), card_lines(self.font, t, acked(t), L.slots[0][2] - 4),
                              i == sel))
            self.cards = cards
            self.key = key
        self.ages = ages[first:last]
        self.status = "%s  %s%s" % (station, "%d-%d/%d" % (first + 1, last, n) if n else "0",
                                    " +%d" % more if more else "")
        self.online = online
        cells = [("bar", (0, 0, L.width, L.bar), (self.status, online))]
        for j in range(k):
            x, cw, _ = L.slots[j]
            hs = bs = (None, n == 0 and j == 0)
            if j < len(self.cards):
                tid, head, lines, chosen = self.cards[j]
                age = self.ages[j]
                hs = (tid, head, L.timer(age), L.level(age), chosen)
                bs = (tid, lines, chosen)
            cells.append((j, (x, L.bar, cw, L.head), hs))
            cells.append((j + k, (x, L.bar + L.head, cw, L.height - L.bar - L.head), bs))
        if full:
            self.sigs = {}
        done = []
        for key, rect, sig in cells:
            if self.sigs.get(key) != sig:
                self.sigs[key] = sig
                self._cell(key if key == "bar" else key % k, rect)
                done.append(rect)
        if done:
            self.panel.refresh(done)
        return done

    # --- painting in screen coordinates, clipped to the current band -------------
    def _rect(self, x, y, w, h, c, fill=True):
        self.fb.rect(x - self.ox, y - self.oy, w, h, c, fill)

    def _text(self, s, x, y, c, xmax):
        if self.oy - GH < y < self.oy + self.bh:
            key = c ^ self.L.mask
            self.pal.pixel(0, 0, key)
            self.pal.pixel(1, 0, c)
            self.font.draw(self.fb, s, x - self.ox, y - self.oy, c, self.pal, key, xmax - self.ox)

    def _cell(self, slot, rect):
        L = self.L
        x, y, w, h = rect
        rb = w * L.bpp or w // 8
        rows = min(h, L.band // rb)
        by = 0
        while by < h:
            self.bh = bh = min(rows, h - by)
            self.fb = framebuf.FrameBuffer(self.buf, w, bh, L.fmt)
            self.fb.fill(L.BG)
            self.ox = x
            self.oy = y + by
            if slot == "bar":
                self._bar()
            elif slot < len(self.cards):
                self._card(self.cards[slot], self.ages[slot], L.slots[slot])
            elif slot == 0:
                self._text("no tickets", 16, L.bar + L.head + 40, L.FG, L.width)
            self.panel.push(x, y + by, w, bh, memoryview(self.buf)[:rb * bh])
            by += bh

    def _bar(self):
        L = self.L
        bg, fg = L.ROLES["bar"]
        self._rect(0, 0, L.width, L.bar, bg)
        ty = (L.bar - GH) // 2
        self._text(self.status, 4, ty, fg, L.width - 80)
        if not self.online:
            bg, fg = L.ROLES["off"]
            self._rect(L.width - 76, 1, 74, L.bar - 2, bg)
            self._text("OFFLINE", L.width - 72, ty, fg, L.width)

    def _card(self, c, age, slot):
        """Paint one card, only what falls in the current band."""
        L = self.L
        _, head, body, chosen = c
        x, _, w = slot
        y = L.bar
        frame = L.ROLES.get("frame" if chosen else "border", (None, L.FG))[1]
        if self.oy < y + L.head:
            lvl = L.level(age)
            bg, fg = L.HEAD[lvl]
            if bg is not None:
                self._rect(x, y, w, L.head, bg)
            timer = L.timer(age)
            tw = self.font.width(timer) + 8
            tbg, tfg = L.TIMER[lvl]
            if tbg is not None:
                self._rect(x + w - tw, y, tw, L.head, tbg)
            ty = y + (L.head - GH) // 2
            self._text(head, x + 4, ty, fg, x + w - tw)
            self._text(timer, x + w - tw + 4, ty, tfg, x + w)
            self._rect(x, y + L.head - 1, w, 1, frame)
        st, lines = body
        top = y + L.head + 2
        n = len(lines)
        fit = (L.height - 2 - top) // LH
        shown = n if n <= fit else fit - 1
        for k in range(max(0, (self.oy - top) // LH), min(shown, (self.oy + self.bh - top) // LH + 1)):
            s = st[k]
            ind = INDENT[STYLE.find(s)]
            yy = top + k * LH
            rbg, rfg = L.ROLES.get(s, (None, L.FG))
            if rbg is not None:
                self._rect(x + 2, yy, w - 4, LH, rbg)
            if s == "k":
                self._rect(x + 2, yy, 3, LH, rfg)
            self._text(lines[k], x + 2 + ind, yy + 1, rfg, x + w - 2)
            if s in STRUCK:
                self._rect(x + 2 + ind, yy + 9, self.font.width(lines[k]), 1, rfg)
        if shown < n:
            self._text("+%d more" % (n - shown), x + 4, top + shown * LH, L.FG, x + w)
        for k in range(3 if chosen else 1):
            self._rect(x + k, y + k, w - 2 * k, L.height - y - 2 * k, frame, False)
