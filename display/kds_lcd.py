# LCD layout for display.kds: ILI9341 320x240, RGB565 byte-swapped (see kds.c565).
# Two slots; the card head is green, amber at warn, red at late.
try:
    import framebuf
except ImportError:
    from display import canvas as framebuf
from display import kds
from display.kds import c565

WHITE = c565(255, 255, 255)
CHANGED = (None, c565(255, 230, 0))
VOID = (None, c565(120, 120, 120))


class Layout(kds.Layout):
    width = 320
    height = 240
    fmt = framebuf.RGB565
    bpp = 2
    bar = 18
    head = 18
    slots = ((0, 160, 158), (160, 160, 158))
    band = 640
    mask = 0xFFFF
    BG = 0
    FG = WHITE
    HEAD = TIMER = ((c565(0, 150, 0), 0), (c565(255, 170, 0), 0), (c565(220, 0, 0), WHITE))
    ROLES = {
        "bar": (c565(50, 50, 60), WHITE),
        "b": (c565(220, 0, 0), WHITE),
        "off": (c565(220, 0, 0), WHITE),
        "k": (c565(90, 0, 0), c565(255, 200, 200)),
        "m": (None, c565(0, 200, 255)),
        "c": CHANGED, "d": CHANGED,
        "v": VOID, "w": VOID, "x": VOID,
        "n": (None, c565(255, 150, 255)),
        "a": (None, c565(160, 160, 160)),
        "border": (None, c565(70, 70, 70)),
    }
