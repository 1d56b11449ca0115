"""CPython stand-in for MicroPython's framebuf, so display/ renders on the hub.

Implements the subset display/ uses (fill, pixel, hline, vline, fill_rect, rect,
blit with key and palette, text) with framebuf's clipping rules and byte layouts
(MONO_HLSB, MONO_VLSB, RGB565 stored as native little-endian uint16), so a frame
drawn here is byte-identical to one drawn on the device. png() writes a frame as PNG.
"""
import struct
import zlib

MONO_VLSB = 0
RGB565 = 1
MONO_HLSB = 3


class FrameBuffer:
    def __init__(self, buf, width, height, fmt, stride=None):
        if fmt not in (MONO_VLSB, RGB565, MONO_HLSB):
            raise ValueError("unsupported format %r" % fmt)
        self.buf = buf
        self.width = width
        self.height = height
        self.format = fmt
        self.stride = stride or width
        need = self._size()
        if len(buf) < need:
            raise ValueError("buffer too small: %d < %d" % (len(buf), need))

    def _size(self):
        if self.format == RGB565:
            return self.stride * self.height * 2
        if self.format == MONO_HLSB:
            return (self.stride + 7) // 8 * self.height
        return self.stride * ((self.height + 7) // 8)

    # --- pixels in the buffer ---------------------------------------------
    def _set(self, x, y, c):
        b = self.buf
        if self.format == RGB565:
            i = (y * self.stride + x) * 2
            b[i] = c & 0xFF
            b[i + 1] = (c >> 8) & 0xFF
        elif self.format == MONO_HLSB:
            i = y * ((self.stride + 7) // 8) + x // 8
            m = 0x80 >> (x & 7)
            b[i] = (b[i] | m) if c & 1 else (b[i] & ~m & 0xFF)
        else:
            i = (y // 8) * self.stride + x
            m = 1 << (y & 7)
            b[i] = (b[i] | m) if c & 1 else (b[i] & ~m & 0xFF)

    def _get(self, x, y):
        b = self.buf
        if self.format == RGB565:
            i = (y * self.stride + x) * 2
            return b[i] | (b[i + 1] << 8)
        if self.format == MONO_HLSB:
            return (b[y * ((self.stride + 7) // 8) + x // 8] >> (7 - (x & 7))) & 1
        return (b[(y // 8) * self.stride + x] >> (y & 7)) & 1

    # --- framebuf API --------------------------------------------------------
    def fill(self, c):
        self.fill_rect(0, 0, self.width, self.height, c)

    def pixel(self, x, y, c=None):
        if not (0 <= x < self.width and 0 <= y < self.height):
            return None
        if c is None:
            return self._get(x, y)
        self._set(x, y, c)
        return None

    def fill_rect(self, x, y, w, h, c):
        if h < 1 or w < 1 or x + w <= 0 or y + h <= 0 or y >= self.height or x >= self.width:
            return
        xe = min(self.width, x + w)
        ye = min(self.height, y + h)
        x = max(x, 0)
        y = max(y, 0)
        if self.format == RGB565:
            row = bytes((c & 0xFF, (c >> 8) & 0xFF)) * (xe - x)
            for yy in range(y, ye):
                i = (yy * self.stride + x) * 2
                self.buf[i:i + len(row)] = row
            return
        for yy in range(y, ye):
            for xx in range(x, xe):
                self._set(xx, yy, c)

    def hline(self, x, y, w, c):
        self.fill_rect(x, y, w, 1, c)

    def vline(self, x, y, h, c):
        self.fill_rect(x, y, 1, h, c)

    def rect(self, x, y, w, h, c, fill=False):
        if fill:
            self.fill_rect(x, y, w, h, c)
            return
        self.fill_rect(x, y, w, 1, c)
        self.fill_rect(x, y + h - 1, w, 1, c)
        self.fill_rect(x, y, 1, h, c)
        self.fill_rect(x + w - 1, y, 1, h, c)

    def blit(self, src, x, y, key=-1, palette=None):
        """framebuf semantics: the source pixel goes through the palette, then
        pixels equal to key are skipped."""
        if x >= self.width or y >= self.height or -x >= src.width or -y >= src.height:
            return
        x0 = max(0, x)
        y0 = max(0, y)
        x1 = max(0, -x)
        y1 = max(0, -y)
        xe = min(self.width, x + src.width)
        ye = min(self.height, y + src.height)
        for yy in range(y0, ye):
            sy = y1 + yy - y0
            for xx in range(x0, xe):
                col = src._get(x1 + xx - x0, sy)
                if palette is not None:
                    col = palette._get(col, 0)
                if col != key:
                    self._set(xx, yy, col)

    def text(self, s, x, y, c=1):
        """8x8 text for the pager's layout, from the kitchen font's ASCII glyphs
        folded to half height (framebuf's own 8x8 font is not shipped here)."""
        from display import font
        f = font.default()
        for ch in s:
            cp = ord(ch)
            bits = f.load(cp - 0x20 if 0x20 <= cp <= 0x7E else 0x1F)  # '?' otherwise
            for r in range(8):
                row = bits[4 * r] | bits[4 * r + 2]
                for col in range(8):
                    if row & (0x80 >> col):
                        self.pixel(x + col, y + r, c)
            x += 8


def rgb(c565):
    """The RGB888 colour of a byte-swapped RGB565 value (the panels' byte order)."""
    v = ((c565 & 0xFF) << 8) | (c565 >> 8)
    r, g, b = (v >> 11) & 0x1F, (v >> 5) & 0x3F, v & 0x1F
    return (r * 255 // 31, g * 255 // 63, b * 255 // 31)


def png(fb, mono=((0, 0, 0), (255, 255, 255))):
    """PNG bytes of a FrameBuffer; mono gives the RGB of bit 0 and bit 1."""
    rows = bytearray()
    for y in range(fb.height):
        rows.append(0)
        for x in range(fb.width):
            c = fb._get(x, y)
            rows += bytes(rgb(c) if fb.format == RGB565 else mono[c])

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    head = struct.pack(">IIBBBBB", fb.width, fb.height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
            + chunk(b"IEND", b""))


class Panel:
    """A whole panel in RAM for the hub and tests: display.kds pushes bands here."""

    def __init__(self, width, height, fmt):
        self.fb = FrameBuffer(bytearray(width * height * 2 if fmt == RGB565 else (width + 7) // 8 * height),
                              width, height, fmt)
        self.pushes = []
        self.refreshes = []

    def push(self, x, y, w, h, buf):
        """Copy a band of rows (x and w on byte boundaries for mono) into the frame."""
        rgb = self.fb.format == RGB565
        if not rgb and (x % 8 or w % 8):
            raise ValueError("mono pushes must start and end on 8 px boundaries")
        rb = w * 2 if rgb else w // 8
        fw = self.fb.width * 2 if rgb else (self.fb.width + 7) // 8
        off = x * 2 if rgb else x // 8
        for r in range(h):
            i = (y + r) * fw + off
            self.fb.buf[i:i + rb] = buf[r * rb:(r + 1) * rb]
        self.pushes.append((x, y, w, h))

    def refresh(self, rects):
        self.refreshes.append(list(rects))
