"""Raw TCP throughput between two namespaces: the yardstick ``benchmarks.lan`` compares with.

    python -m benchmarks.lan_tcp sink --listen 10.77.0.2 --port 9100
    python -m benchmarks.lan_tcp send --to 10.77.0.2 --port 9100 --bytes 268435456

The sink reads until the sender closes and reports bytes and seconds (first byte to last) as a
JSON line; plain sockets with 1 MiB writes, the best a Python program can expect on the link.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

BLOCK = 1 << 20


def say(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def sink(host: str, port: int) -> None:
    with socket.create_server((host, port)) as server:
        say(event="listening")
        conn, _ = server.accept()
        with conn:
            received = 0
            buffer = bytearray(BLOCK)
            start = 0.0
            while n := conn.recv_into(buffer):
                if not received:
                    start = time.perf_counter()
                received += n
            seconds = time.perf_counter() - start
    say(event="received", bytes=received, seconds=seconds)


def send(host: str, port: int, total: int) -> None:
    payload = bytes(BLOCK)
    with socket.create_connection((host, port)) as conn:
        sent = 0
        while sent < total:
            conn.sendall(payload)
            sent += len(payload)
    say(event="sent", bytes=sent)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sink", "send"])
    parser.add_argument("--listen", default="")
    parser.add_argument("--to", default="")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--bytes", type=int, default=64 << 20)
    args = parser.parse_args(argv)
    if args.mode == "sink":
        sink(args.listen, args.port)
    else:
        send(args.to, args.port, args.bytes)


if __name__ == "__main__":
    main(sys.argv[1:])
