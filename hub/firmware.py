"""Firmware bundles the hub serves for over-the-air updates.

A bundle is one file a device can unpack while it streams and hashes it:

    RFMB1\\n
    F <size> <path>\\n<size bytes>      one per file, path relative to the app dir
    E\\n

It holds an app's compiled .mpy tree (firmware/build.py, without main.py, which stays
on the device as the boot loader) plus a VERSION file. Bundles live in
<data-dir>/firmware/<kind>/<version>.bin with a manifest <version>.json
{kind, version, sha256, size, app, published_at}.

    python -m hub.firmware publish --kind table --version 0.2.0    # build, pack, publish
"""
import argparse
import hashlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
APP_OF = {"table": "table_button", "pager": "waiter_pager", "kds": "kitchen_display"}
MAGIC = b"RFMB1\n"
VERSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,24}$")
PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,79}$")


class FirmwareError(ValueError):
    pass


def check_version(version):
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise FirmwareError("version: 1-24 characters of A-Z a-z 0-9 . _ -, got %r" % (version,))
    return version


def load_build():
    spec = importlib.util.spec_from_file_location("fw_build", ROOT / "firmware" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    return build


def pack(app_dir, version):
    """The bundle bytes of a built app dir (main.py left out, VERSION added)."""
    check_version(version)
    app_dir = pathlib.Path(app_dir)
    out = [MAGIC]
    files = sorted(p for p in app_dir.rglob("*") if p.is_file() and p.name != "VERSION"
                   and p.relative_to(app_dir).as_posix() != "main.py")
    if not files:
        raise FirmwareError("%s holds no files" % app_dir)
    for p in files:
        rel = p.relative_to(app_dir).as_posix()
        if not PATH_RE.match(rel) or ".." in rel.split("/"):
            raise FirmwareError("path %r cannot go in a bundle" % rel)
        data = p.read_bytes()
        out.append(b"F %d %s\n" % (len(data), rel.encode()) + data)
    v = version.encode()
    out.append(b"F %d VERSION\n" % len(v) + v)
    out.append(b"E\n")
    return b"".join(out)


class Firmware:
    def __init__(self, data_dir):
        self.dir = pathlib.Path(data_dir) / "firmware"

    def path(self, kind, version):
        if kind not in APP_OF:
            raise FirmwareError("kind: must be one of %s" % ", ".join(APP_OF))
        return self.dir / kind / ("%s.bin" % check_version(version))

    def publish(self, kind, version, bundle):
        """Store bundle bytes; return the manifest."""
        path = self.path(kind, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        manifest = {"kind": kind, "version": version, "sha256": hashlib.sha256(bundle).hexdigest(),
                    "size": len(bundle), "app": APP_OF[kind], "published_at": time.time()}
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bundle)
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(manifest) + "\n", encoding="utf-8")
        return manifest

    def manifest(self, kind, version=None):
        """The manifest of one version, or of the newest published; None if there is none."""
        if version is None:
            found = sorted((self.dir / kind).glob("*.json"), key=lambda p: p.stat().st_mtime) \
                if kind in APP_OF else []
            return json.loads(found[-1].read_text(encoding="utf-8")) if found else None
        try:
            return json.loads(self.path(kind, version).with_suffix(".json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def list(self):
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.dir.glob("*/*.json"))]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hub.firmware", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("publish", help="build (or take --bundle), pack and publish a version")
    pub.add_argument("--kind", required=True, choices=sorted(APP_OF))
    pub.add_argument("--version", required=True, help="version string the device will report as fw")
    pub.add_argument("--bundle", type=pathlib.Path, help="an app dir built by firmware/build.py "
                                                         "(default: build it now)")
    pub.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path("data"),
                     help="the hub's data directory (default ./data)")
    sub.add_parser("list", help="list published versions").add_argument(
        "--data-dir", type=pathlib.Path, default=pathlib.Path("data"))
    a = ap.parse_args(argv)
    fw = Firmware(a.data_dir)
    if a.cmd == "list":
        for m in fw.list():
            print("%-6s %-12s %7d bytes sha256 %s" % (m["kind"], m["version"], m["size"], m["sha256"]))
        return 0
    try:
        check_version(a.version)
        tmp = None
        bundle = a.bundle
        if bundle is None:
            build = load_build()
            if APP_OF[a.kind] not in build.APPS:
                ap.error("no %s app in firmware/build.py yet" % APP_OF[a.kind])
            tmp = tempfile.mkdtemp(prefix="rfm-fw-")
            print("building %s ..." % APP_OF[a.kind])
            bundle = build.build(APP_OF[a.kind], tmp, ["esp32"])[0]
        try:
            m = fw.publish(a.kind, a.version, pack(bundle, a.version))
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
    except (FirmwareError, OSError) as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    print("published %s %s: %d bytes, sha256 %s" % (m["kind"], m["version"], m["size"], m["sha256"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
