# Small persistent values in the board's flash (data dir).
import os


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    try:
        os.rename(tmp, path)
    except OSError:  # file systems that refuse to replace
        os.remove(path)
        os.rename(tmp, path)


class Counter:
    """Monotonic counter surviving reboot; flash holds the reserved ceiling,
    written once per `block` values (a reboot skips the unused rest)."""

    def __init__(self, path, block=16):
        self.path = path
        self.block = block
        try:
            with open(path) as f:
                self.n = int(f.read())
        except (OSError, ValueError):
            self.n = 1
        self.top = self.n

    def next(self):
        if self.n >= self.top:
            self.top = self.n + self.block
            _write(self.path, str(self.top))
        self.n += 1
        return self.n - 1
