#!/usr/bin/env python3
"""Write a dnsperf -B query file (TCP-stream binary: 2-octet length, then the message) for
the ECS mix: 80 % the global name (A and AAAA), the rest static names and NXDOMAIN, every
query with EDNS (payload 1232) and an ECS /24 option from one of three client networks of
the latency table, in turn.

Usage: benches/ecs_queries.py OUT
"""
import struct
import sys

NETS = [(192, 0, 2), (198, 51, 100), (203, 0, 113)]
# (name, type) in the same proportions as the mix without ECS.
MIX = [("contoso.registry.example", 1), ("contoso.registry.example", 28)] * 4 + [
    ("www.registry.example", 1),
    ("nope%d.registry.example", 1),
]


def qname(name):
    out = b""
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qid, name, qtype, net):
    header = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1)
    question = qname(name) + struct.pack(">HH", qtype, 1)
    ecs = struct.pack(">HBB", 1, 24, 0) + bytes(net)
    option = struct.pack(">HH", 8, len(ecs)) + ecs
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(option)) + option
    return header + question + opt


def main():
    with open(sys.argv[1], "wb") as f:
        n = 0
        for round_ in range(30):
            for i, (name, qtype) in enumerate(MIX):
                if "%d" in name:
                    name = name % (round_ * len(MIX) + i)
                msg = query(n & 0xFFFF, name, qtype, NETS[n % len(NETS)])
                f.write(struct.pack(">H", len(msg)) + msg)
                n += 1


if __name__ == "__main__":
    main()
