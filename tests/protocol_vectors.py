# Runs protocol/vectors.json through the contract; the same file runs on CPython and
# MicroPython and prints one verdict line per vector plus a summary.
import json
import sys

import protocol


def outcome(fn):
    try:
        return ["ok", fn()]
    except protocol.ProtocolError as e:
        return ["err", e.field]


def main(path):
    with open(path) as f:
        vectors = json.load(f)
    bad = 0
    for v in vectors["topics"]:
        got = outcome(lambda: list(protocol.parse_topic(v["topic"])))
        want = ["ok", v["ok"]] if "ok" in v else ["err", v["field"]]
        if got != want:
            bad += 1
            print("FAIL topic", v["topic"], got, want)
    for v in vectors["payloads"]:
        data = v["data"].encode("utf-8")
        got = outcome(lambda: protocol.decode(v["msg"], data))
        if "field" in v:
            want = ["err", v["field"]]
        else:
            want = ["ok", json.loads(v["data"])]
            again = outcome(lambda: protocol.decode(v["msg"], protocol.encode(v["msg"], got[1])))
            if again != want:
                bad += 1
                print("FAIL round trip", v["msg"], again)
        if got != want:
            bad += 1
            print("FAIL payload", v["msg"], v["data"], got, want)
    total = len(vectors["topics"]) + len(vectors["payloads"])
    print("vectors: %d checked, %d failed" % (total, bad))
    return bad


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1]) else 0)
