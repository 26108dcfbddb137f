"""A tiny DNS-over-UDP client for the scale benchmark (no dnspython): one question, an
optional OPT record with an optional ECS option, bound to a chosen source address.

    c = Client(("127.0.0.1", 5300), src="127.0.100.1")
    r = c.query("r7.registry.example.")       # Reply(rcode=0, a=["192.0.2.1"]) or None
"""

import random
import socket
import struct
import time

TYPE_A = 1
TYPE_OPT = 41
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def build_query(qid, name, qtype=TYPE_A, edns=True, ecs=None):
    """ecs: None or (address, source_prefix) for IPv4."""
    header = struct.pack(">HHHHHH", qid, 0x0000, 1, 0, 0, 1 if edns else 0)
    question = encode_name(name) + struct.pack(">HH", qtype, 1)
    opt = b""
    if edns:
        rdata = b""
        if ecs is not None:
            addr, plen = ecs
            raw = socket.inet_aton(addr)[: (plen + 7) // 8]
            body = struct.pack(">HBB", 1, plen, 0) + raw
            rdata = struct.pack(">HH", 8, len(body)) + body
        opt = b"\x00" + struct.pack(">HHIH", TYPE_OPT, 1232, 0, len(rdata)) + rdata
    return header + question + opt


def skip_name(msg, off):
    while True:
        if off >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


class Reply:
    __slots__ = ("rcode", "a", "ancount", "ttl")

    def __init__(self, rcode, a, ancount, ttl):
        self.rcode, self.a, self.ancount, self.ttl = rcode, a, ancount, ttl

    @property
    def rcode_name(self):
        return RCODES.get(self.rcode, str(self.rcode))

    def __repr__(self):
        return f"Reply({self.rcode_name}, a={self.a})"


def parse_reply(msg, qid):
    if len(msg) < 12:
        return None
    rid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", msg[:12])
    if rid != qid or not flags & 0x8000:
        return None
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    addrs, ttl = [], None
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _rclass, rttl, rdlen = struct.unpack(">HHIH", msg[off : off + 10])
        off += 10
        if rtype == TYPE_A and rdlen == 4:
            addrs.append(socket.inet_ntoa(msg[off : off + 4]))
            ttl = rttl
        off += rdlen
    return Reply(flags & 0x000F, addrs, an, ttl)


class Client:
    """One UDP socket bound to `src`; query() retries on timeout and ignores stray replies."""

    def __init__(self, server, src="127.0.0.1", timeout=1.0, retries=2, edns=True):
        self.server = server
        self.timeout = timeout
        self.retries = retries
        self.edns = edns
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((src, 0))
        self.sock.connect(server)
        self.qid = random.randrange(0x10000)
        self.sent = 0
        self.timeouts = 0

    def close(self):
        self.sock.close()

    def query(self, name, qtype=TYPE_A, ecs=None):
        """The Reply, or None when every try timed out (or the port was unreachable)."""
        for _ in range(self.retries + 1):
            self.qid = (self.qid + 1) & 0xFFFF
            pkt = build_query(self.qid, name, qtype, self.edns, ecs)
            try:
                self.sock.send(pkt)
            except ConnectionRefusedError:
                time.sleep(0.01)
                continue
            self.sent += 1
            deadline = time.monotonic() + self.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.timeouts += 1
                    break
                self.sock.settimeout(left)
                try:
                    msg = self.sock.recv(4096)
                except socket.timeout:
                    self.timeouts += 1
                    break
                except ConnectionRefusedError:  # ICMP port unreachable: not listening yet
                    return None
                r = parse_reply(msg, self.qid)
                if r is not None:
                    return r
        return None
