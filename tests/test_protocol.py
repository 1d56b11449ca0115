import json
import os
import shutil
import subprocess
import sys

import pytest

import protocol
from tests.conftest import ROOT

VECTORS = os.path.join(ROOT, "protocol", "vectors.json")
RUNNER = os.path.join(ROOT, "tests", "protocol_vectors.py")
MICROPYTHON = shutil.which("micropython") or os.path.join(os.path.dirname(sys.executable), "micropython")


def run(cmd, env):
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout + out.stderr


def test_vectors_pass_on_cpython():
    rc, out = run([sys.executable, RUNNER, VECTORS], dict(os.environ, PYTHONPATH=ROOT))
    assert rc == 0, out
    assert "0 failed" in out


def test_vectors_pass_on_micropython_with_esp32_heap():
    rc, out = run([MICROPYTHON, "-X", "heapsize=112000", RUNNER, VECTORS],
                  dict(os.environ, MICROPYPATH=ROOT + ":.frozen"))
    assert rc == 0, out
    with open(VECTORS) as f:
        v = json.load(f)
    assert "%d checked, 0 failed" % (len(v["topics"]) + len(v["payloads"])) in out


def test_chinese_text_travels_as_raw_utf8():
    data = protocol.encode("feedback", {"id": "T1-1", "state": "seen", "by": "小王"})
    assert "小王".encode("utf-8") in data
    assert protocol.decode("feedback", data)["by"] == "小王"


def test_oversize_payload_is_rejected_with_reason():
    data = b'{"id":"T1-1","action":"raise","type":"' + b"w" * 300 + b'"}'
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode("call", data)
    assert e.value.field == "payload" and "byte limit" in e.value.reason


def test_invalid_utf8_is_rejected():
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode("call", b'{"id":"\xff"}')
    assert e.value.reason == "not valid UTF-8"


def test_topic_builder_refuses_message_on_wrong_kind():
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.topic("demo", "pager", "P1", "call")
    assert e.value.field == "message"
    assert protocol.topic("demo", "pager", "P1", "act") == "rfm/v1/demo/pager/P1/act"
