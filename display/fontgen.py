#!/usr/bin/env python3
"""Generate the kitchen displays' bitmap font (CPython build step, needs Pillow).

Renders printable ASCII plus every character found in the given texts from a CJK
TrueType font into display/font16.bin, read by display/font.py on the device and
on the hub. File layout (all big-endian):

  b"RFMF", version 1, glyph height, bytes per glyph, 0, glyph count (u16)
  index: count x (codepoint u24, advance width u8), sorted by codepoint;
         printable ASCII (0x20-0x7E) is always the first 95 entries
  glyphs: count x 32 bytes, 16x16 MONO_HLSB (bit 7 leftmost, 2 bytes a row)

Texts: the built-in word list display/kitchen_words.txt, every --text-file (a JSON
file contributes its string values and keys, any other file all its characters)
and every --text string.
"""
import argparse
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
FACE_INDEX = 1  # "WenQuanYi Zen Hei Mono": half-width Latin, full-width CJK
SIZE = 15  # px; with a -2 px offset the glyphs fill a 16 px cell exactly
HEIGHT = 16
RECORD = 32
ASCII = [chr(c) for c in range(0x20, 0x7F)]


def json_strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from json_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from json_strings(v)


def chars_of(texts):
    """Sorted set of the printable non-ASCII characters in texts."""
    found = set()
    for text in texts:
        for ch in text:
            if ord(ch) > 0x7E and ch.isprintable():
                found.add(ch)
    return sorted(found)


def read_text_file(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        return list(json_strings(json.loads(text)))
    return [text]


def render(chars, font_path=DEFAULT_FONT):
    """[(codepoint, width, 32 bytes)] for ASCII + chars, sorted by codepoint."""
    from PIL import Image, ImageDraw, ImageFont
    face = ImageFont.truetype(font_path, SIZE, index=FACE_INDEX)
    out = []
    for ch in ASCII + [c for c in chars if c not in ASCII]:
        width = 16 if face.getlength(ch) > 8 else 8
        im = Image.new("1", (16, HEIGHT), 0)
        draw = ImageDraw.Draw(im)
        draw.fontmode = "1"
        draw.text((0, -2), ch, font=face, fill=1)
        if width == 8:
            im.paste(0, (8, 0, 16, HEIGHT))
        out.append((ord(ch), width, im.tobytes()))  # mode "1" rows are MSB-first bytes
    out.sort()
    return out


def pack(glyphs):
    head = b"RFMF" + struct.pack(">BBBBH", 1, HEIGHT, RECORD, 0, len(glyphs))
    index = b"".join(struct.pack(">I", cp)[1:] + bytes((w,)) for cp, w, _ in glyphs)
    return head + index + b"".join(bits for _, _, bits in glyphs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", default=os.path.join(HERE, "font16.bin"),
                    help="output file (default display/font16.bin)")
    ap.add_argument("--font", default=DEFAULT_FONT,
                    help="TrueType collection to render from (default: %s, Debian fonts-wqy-zenhei)" % DEFAULT_FONT)
    ap.add_argument("--text-file", action="append", default=[], metavar="PATH",
                    help="menu or word file whose characters must be covered (repeatable)")
    ap.add_argument("--text", action="append", default=[], help="extra characters to cover (repeatable)")
    ap.add_argument("--no-words", action="store_true", help="leave out display/kitchen_words.txt")
    a = ap.parse_args(argv)
    if not os.path.exists(a.font):
        ap.error("font %s not found (apt-get install fonts-wqy-zenhei)" % a.font)
    files = ([] if a.no_words else [os.path.join(HERE, "kitchen_words.txt")]) + a.text_file
    texts = list(a.text)
    for path in files:
        try:
            texts += read_text_file(path)
        except (OSError, ValueError) as e:
            ap.error("%s: %s" % (path, e))
        print("read %s" % path, file=sys.stderr)
    chars = chars_of(texts)
    print("rendering %d ASCII + %d other characters" % (len(ASCII), len(chars)), file=sys.stderr)
    data = pack(render(chars, a.font))
    with open(a.out, "wb") as f:
        f.write(data)
    print("%s: %d glyphs, %d bytes" % (a.out, len(ASCII) + len(chars), len(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
