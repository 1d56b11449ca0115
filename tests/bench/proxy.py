"""A loopback TCP proxy that can black-hole its traffic, for the fault suite.

    p = Proxy(upstream_port).start()     # devices connect to 127.0.0.1:p.port
    p.blackhole()                        # bytes both ways vanish; connections stay open,
                                         # new ones are accepted and go nowhere (Wi-Fi gone)
    p.restore()                          # the dead connections are reset (their streams lost
                                         # bytes, as TCP would give up on them); new ones pass
    p.close()

Only 127.0.0.1, one thread per connection, every loop bounded by a select timeout.
"""
import selectors
import socket
import threading


class Proxy:
    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.holed = False
        self.accepted = 0
        self.dropped_bytes = 0
        self._lock = threading.Lock()
        self._conns = []  # [client socket, upstream socket or None, holed at birth or since]
        self._stop = threading.Event()
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(64)
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def blackhole(self):
        with self._lock:
            self.holed = True
            for c in self._conns:
                c[2] = True

    def restore(self):
        with self._lock:
            self.holed = False
            dead = [c for c in self._conns if c[2]]
        for c in dead:
            self._reset(c)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._srv.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            self._reset(c)

    def _reset(self, c):
        for s in c[:2]:
            if s is None:
                continue
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            except OSError:
                pass
        with self._lock:
            if c in self._conns:
                self._conns.remove(c)

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _addr = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                holed = self.holed
            up = None
            if not holed:
                try:
                    up = socket.create_connection(self.upstream, timeout=5)
                except OSError:
                    client.close()
                    continue
            c = [client, up, holed]
            with self._lock:
                self._conns.append(c)
            threading.Thread(target=self._pump, args=(c,), name="proxy-pump", daemon=True).start()

    def _pump(self, c):
        sel = selectors.DefaultSelector()
        client, up = c[0], c[1]
        try:
            sel.register(client, selectors.EVENT_READ, up)
            if up is not None:
                sel.register(up, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _mask in sel.select(0.2):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    if c[2] or key.data is None:
                        self.dropped_bytes += len(data)
                    else:
                        key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            self._reset(c)
