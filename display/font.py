# Bitmap font made by display/fontgen.py, read glyph by glyph with seek so the
# whole file never sits in RAM. Runs on MicroPython and CPython (display.canvas).
from array import array

try:
    import framebuf
except ImportError:
    from display import canvas as framebuf

MAGIC = b"RFMF"
HEAD = 10
NASCII = 95  # 0x20-0x7E are always the first index entries
CACHE = 32  # direct-mapped lookup cache slots, allocated once
_default = None


def wide(cp):
    """Width of a character missing from the font: CJK and other wide scripts 16."""
    return 16 if cp >= 0x1100 else 8


class Font:
    def __init__(self, path):
        self.path = path
        self.f = open(path, "rb")
        h = self.f.read(HEAD)
        if len(h) != HEAD or h[:4] != MAGIC or h[4] != 1:
            raise ValueError("%s: not a version 1 RFMF font" % path)
        self.height = h[5]
        self.rec = h[6]
        self.n = (h[8] << 8) | h[9]
        self.base = HEAD + 4 * self.n
        self.buf = bytearray(self.rec)
        self.glyph = framebuf.FrameBuffer(self.buf, 16, self.height, framebuf.MONO_HLSB)
        self._e = bytearray(4)
        aw = bytearray(NASCII)
        for i in range(NASCII):
            aw[i] = self._entry(i)[3]
        self._aw = aw
        self._ck = array("I", bytes(4 * CACHE))  # codepoint per slot
        self._cv = array("I", bytes(4 * CACHE))  # find()'s answer per slot

    def _entry(self, i):
        self.f.seek(HEAD + 4 * i)
        self.f.readinto(self._e)
        return self._e

    def find(self, cp):
        """(glyph index + 1, 0 when missing) << 8 | advance width: an int, so
        looking up allocates nothing (few locals: MicroPython keeps the frame
        of a small function on the C stack, a big one on the heap)."""
        if 0x20 <= cp <= 0x7E:
            return (cp - 0x1F) << 8 | self._aw[cp - 0x20]
        h = cp % CACHE
        if self._ck[h] == cp:
            return self._cv[h]
        return self._search(cp, h)

    def _search(self, cp, h):
        lo = NASCII
        hi = self.n - 1
        found = wide(cp)
        while lo <= hi:
            mid = (lo + hi) // 2
            e = self._entry(mid)
            v = (e[0] << 16) | (e[1] << 8) | e[2]
            if v == cp:
                found = (mid + 1) << 8 | e[3]
                break
            if v < cp:
                lo = mid + 1
            else:
                hi = mid - 1
        self._ck[h] = cp
        self._cv[h] = found
        return found

    def width(self, s):
        w = 0
        for ch in s:
            w += self.find(ord(ch)) & 0xFF
        return w

    def load(self, i):
        """Read glyph i into self.buf (16 x height, MONO_HLSB)."""
        self.f.seek(self.base + i * self.rec)
        self.f.readinto(self.buf)
        return self.buf

    def draw(self, fb, s, x, y, c, pal, key, xmax):
        """Draw s at (x, y) in colour c, stopping before xmax; a character missing
        from the font is drawn as a box. pal maps glyph bit 0/1 to key/c."""
        for ch in s:
            v = self.find(ord(ch))
            w = v & 0xFF
            if x + w > xmax:
                break
            if v < 256:
                fb.rect(x + 1, y + 1, w - 2, self.height - 2, c)
            else:
                self.load((v >> 8) - 1)
                fb.blit(self.glyph, x, y, key, pal)
            x += w
        return x


def default():
    """The font shipped next to this module (display/font16.bin)."""
    global _default
    if _default is None:
        try:
            here = __file__.rsplit("/", 1)[0]
        except NameError:
            here = "display"
        _default = Font(here + "/font16.bin")
    return _default
