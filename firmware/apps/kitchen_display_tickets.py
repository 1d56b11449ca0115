# The kitchen display's snapshot parser. It scans the spooled payload's bytes for
# the top-level "tickets" array, validates each ticket on its own (protocol.validate)
# and records R ints per ticket in a fixed array: nothing per ticket stays on the heap.
import binascii
import json
import protocol

MAX_TICKETS = protocol.MESSAGES["tickets"][5]["tickets"][2][0]


def _read(f, s, e, buf):
    """Bytes s-e of f, in buf when they fit (no allocation)."""
    f.seek(s)
    if e - s > len(buf):
        return f.read(e - s)
    m = memoryview(buf)[:e - s]
    f.readinto(m)
    return m


R = 5  # ints per ticket in a record array: start, end, age, changed, id hash


def _h(s):
    """32-bit hash of a string (MicroPython's own str hash has 16 bits)."""
    return binascii.crc32(s.encode())


def parse(path, rec, buf, chunk):
    """Fill rec, reading tickets through buf and scanning through chunk (two
    bytearrays, so nothing is allocated per read); return (the payload less its
    tickets, ticket count). ProtocolError names the fault."""
    n = arr = end = depth = start = pos = 0
    instr = esc = False
    try:
        with open(path, "rb") as f:
            while True:
                got = f.readinto(chunk)
                if not got:
                    break
                for i in range(got):
                    c = chunk[i]
                    if instr:
                        if esc:
                            esc = False
                        elif c == 92:
                            esc = True
                        elif c == 34:
                            instr = False
                    elif c == 123 or c == 91:
                        depth += 1
                        if depth == 2 and c == 91 and not arr:
                            arr = pos + 1
                        elif depth == 3 and arr and not end:
                            if c != 123:
                                raise protocol.ProtocolError("tickets[%d]" % n, "must be a JSON object")
                            start = pos
                    elif c == 125 or c == 93:
                        depth -= 1
                        if depth == 2 and arr and not end:
                            here = f.tell()
                            _ticket(f, start, pos + 1, n, rec, buf)
                            f.seek(here)
                            n += 1
                        elif depth == 1 and arr and not end:
                            end = pos
                    else:
                        if c == 34:
                            instr = True
                        if depth == 2 and arr and not end and c not in b" ,\t\r\n":
                            raise protocol.ProtocolError("tickets[%d]" % n, "must be a JSON object")
                    pos += 1
            if depth or instr:
                raise ValueError
            if not end and pos > 1024:
                raise protocol.ProtocolError("tickets", "must be a list")
            f.seek(0)
            top = f.read(arr if end else pos)  # seq and station: the bytes around the array
            if end:
                f.seek(end)
                top += f.read(pos - end)
            top = json.loads(top)
    except protocol.ProtocolError:
        raise
    except ValueError:
        raise protocol.ProtocolError("payload", "not valid JSON")
    protocol.validate("tickets", top)
    return top, n


def _ticket(f, s, e, n, rec, buf):
    """Validate ticket n at bytes s-e of f into rec."""
    if n >= MAX_TICKETS:
        raise protocol.ProtocolError("tickets", "more than %d entries" % MAX_TICKETS)
    try:
        t = json.loads(_read(f, s, e, buf))
        protocol.validate("tickets", {"seq": 0, "station": "", "tickets": [t]})
    except protocol.ProtocolError as err:
        raise protocol.ProtocolError(err.field.replace("[0]", "[%d]" % n, 1), err.reason)
    except ValueError:
        raise protocol.ProtocolError("tickets[%d]" % n, "not valid JSON")
    k = R * n
    rec[k] = s
    rec[k + 1] = e
    rec[k + 2] = t["age"]
    rec[k + 3] = 1 if t.get("changed") else 0
    rec[k + 4] = _h(t["id"])
