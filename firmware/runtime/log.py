# One line per significant event on stdout: "<ms> <tag> <text>".
import time


def log(tag, text):
    print("%d %s %s" % (time.ticks_ms(), tag, text))
