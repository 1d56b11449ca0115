# E-ink layout for display.kds: Waveshare 4.2" 400x300, MONO_HLSB, 1 = white.
# Three fixed 128 px slots on 8 px boundaries, so a partial refresh window is one
# cell. Ageing marker: the timer turns inverse at warn, the whole head at late.
try:
    import framebuf
except ImportError:
    from display import canvas as framebuf
from display import kds


class Layout(kds.Layout):
    width = 400
    height = 300
    fmt = framebuf.MONO_HLSB
    bpp = 0
    bar = 20
    head = 20
    slots = ((0, 136, 128), (136, 136, 128), (272, 128, 128))
    band = 680  # small blocks still exist in a fragmented heap
    mask = 1
    BG = 1
    FG = 0
    ROLES = {"bar": (0, 1), "b": (0, 1), "off": (1, 0)}
    HEAD = ((None, 0), (None, 0), (0, 1))
    TIMER = ((None, 0), (0, 1), (0, 1))
