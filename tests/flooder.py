"""A misbehaving table for the abuse tests: its own valid credentials, QoS 0 raises as fast
as paho sends them. Runs in a process of its own so it does not slow the test's clients.

    python -m tests.flooder PORT USER PASSWORD MAX_MESSAGES MAX_SECONDS

Prints how many messages it sent; stops early on SIGTERM."""
import signal
import sys
import time

import paho.mqtt.client as mqtt


def main(port, user, password, most, seconds):
    kind, device = user.split("/")
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rfm-demo-%s-%s" % (kind, device),
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    c.connect("127.0.0.1", port, keepalive=60)
    c.loop_start()
    topic = "rfm/v1/demo/%s/%s/call" % (kind, device)
    print("connected", flush=True)
    sent, end = 0, time.monotonic() + seconds
    while not stop and sent < most and time.monotonic() < end:
        sent += 1
        c.publish(topic, b'{"id":"%s-%d","action":"raise","type":"water"}' % (device.encode(), sent), qos=0)
        if sent % 500 == 0:
            time.sleep(0.001)  # let paho's network thread write
    c.disconnect()
    c.loop_stop()
    print(sent, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
