"""Plain TCP reachability probe for bed tests: ``listen ADDR PORT`` or ``connect ADDR PORT``.

``connect`` tries once a tenth of a second until ``--seconds`` pass, printing
``{"event": "connected"}`` or ``{"event": "unreachable"}``; ``listen`` accepts and closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


def say(**message: object) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def listen(address: str, port: int) -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, address, port)
    say(event="listening")
    async with server:
        await server.serve_forever()


async def connect(address: str, port: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        try:
            async with asyncio.timeout(0.3):
                _, writer = await asyncio.open_connection(address, port)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        writer.close()
        say(event="connected")
        return
    say(event="unreachable")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["listen", "connect"])
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.mode == "listen":
        asyncio.run(listen(args.address, args.port))
    else:
        asyncio.run(connect(args.address, args.port, args.seconds))


if __name__ == "__main__":
    main(sys.argv[1:])
