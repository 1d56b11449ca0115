import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.brokers import free_port, start_mosquitto, stop_process  # noqa: E402


@pytest.fixture
def broker(tmp_path):
    """A fresh Mosquitto on a free 127.0.0.1 port; yields the port."""
    port = free_port()
    proc = start_mosquitto(port, str(tmp_path / "mosquitto"))
    yield port
    stop_process(proc)


@pytest.fixture
def devices():
    """SimDevices a test appends here are stopped after it."""
    made = []
    yield made
    for d in made:
        d.stop()
