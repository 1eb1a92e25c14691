"""Relay benchmark: WebSocket subscribers held and fan-out latency, RSS per idle subscriber,
appends/s on SQLite and PostgreSQL, block PUT/GET throughput on loopback.

The relay runs as its own process (``python -m relay serve``) so its RSS is its own; clients run
here. ``--smoke`` runs tiny sizes in seconds. PostgreSQL is used when reachable at
``DRIFT_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``), in a schema of its
own that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.harness import Bench
from protocol.auth import AuthChallenge, answer_challenge
from protocol.chain import MembershipChain, Role, make_add_user, make_genesis
from protocol.codec import pack, unpack
from protocol.envelope import seal_envelope
from protocol.keys import CertifiedDevice, DeviceIdentity, UserIdentity

PG_URL = os.environ.get("DRIFT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process used so far: a cost per append that a busy
    machine inflates far less than the rate, which it halves."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.asynccontextmanager
async def relay_process(workdir: Path, extra: dict[str, Any]) -> AsyncIterator[tuple[str, int]]:
    port = _free_port()
    values = {
        "host": "127.0.0.1",
        "data_dir": str(workdir),
        "heartbeat_s": 600.0,
        "log_level": "WARNING",
        "writes_per_minute_per_user": 10_000_000,
        **extra,
    }
    config = workdir.with_suffix(".toml")
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if k != "jwt_key_file"]
    if "jwt_key_file" in values:
        lines += [
            "[[jwt_keys]]",
            'kid = "bench"',
            f"secret_file = {json.dumps(values['jwt_key_file'])}",
        ]
    config.write_text("\n".join(lines) + "\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base + "/healthz") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("relay did not start")
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (pack(body) if body is not None else None)
        async with self.session.request(
            method, self.base + path, data=data, headers=headers
        ) as resp:
            payload = await resp.read()
            if resp.headers.get("Content-Type", "").startswith("application/msgpack"):
                return resp.status, unpack(payload)
            return resp.status, payload


class Writer:
    def __init__(self, user: UserIdentity | None = None) -> None:
        self.user = user or UserIdentity.generate()
        identity = DeviceIdentity.generate()
        cert = self.user.certify(identity.public_key, "bench", int(time.time() * 1000))
        self.device = CertifiedDevice(identity, cert)
        self.token = ""
        self.counter, self.prev = 0, bytes(32)

    async def login(self, client: Client) -> None:
        _, got = await client.call("POST", "/v1/auth/challenge")
        ch = AuthChallenge.decode(got["challenge"])
        resp = answer_challenge(self.device, ch.origin, ch.server_nonce, int(time.time() * 1000))
        status, body = await client.call(
            "POST", "/v1/auth/token", {"response": resp.encode(), "register": True}
        )
        assert status == 200, body
        self.token = body["token"]

    def envelopes(self, share: bytes, key: bytes, height: int, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            env = seal_envelope(
                self.device.identity,
                share=share,
                epoch=0,
                height=height,
                counter=self.counter + 1,
                prev=self.prev,
                seen={},
                blocks=(),
                update=os.urandom(200),
                metadata_key=key,
            )
            self.counter, self.prev = self.counter + 1, env.envelope_hash
            out.append(env.encode())
        return out


async def make_share(client: Client, owner: Writer, members: Sequence[Writer]) -> tuple[bytes, int]:
    share = os.urandom(16)
    genesis = make_genesis(owner.device, share, hashlib.sha256(b"e0").digest(), 0)
    status, body = await client.call(
        "POST", "/v1/shares", {"genesis": genesis.encode()}, owner.token
    )
    assert status == 201, body
    chain = MembershipChain(genesis)
    for member in members:
        entry = make_add_user(chain, owner.device, member.user.public_key, Role.EDITOR, 0)
        status, body = await client.call(
            "POST", f"/v1/shares/{share.hex()}/chain", {"entry": entry.encode()}, owner.token
        )
        assert status == 200, body
        chain.append(entry)
    return share, chain.height


async def appends_per_s(base: str, writers_n: int, per_writer: int, batch: int = 1) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        client = Client(session, base)
        writers = [Writer() for _ in range(writers_n)]
        for w in writers:
            await w.login(client)
        share, height = await make_share(client, writers[0], writers[1:])
        key = os.urandom(32)
        batches = [w.envelopes(share, key, height, per_writer) for w in writers]
        path = f"/v1/shares/{share.hex()}/envelopes"

        async def run(w: Writer, envs: list[bytes]) -> None:
            for start in range(0, len(envs), batch):
                items = [{"envelope": env} for env in envs[start : start + batch]]
                status, body = await client.call("POST", path, {"envelopes": items}, w.token)
                assert status == 200, body

        start = time.perf_counter()
        await asyncio.gather(*(run(w, b) for w, b in zip(writers, batches, strict=True)))
        return writers_n * per_writer / (time.perf_counter() - start)


async def blocks_mb_s(base: str, count: int, size: int, parallel: int) -> tuple[float, float]:
    async with aiohttp.ClientSession() as session:
        client = Client(session, base)
        owner = Writer()
        await owner.login(client)
        share, _ = await make_share(client, owner, [])
        blobs = [os.urandom(size) for _ in range(count)]
        ids = [hashlib.sha256(b).hexdigest() for b in blobs]
        path = f"/v1/shares/{share.hex()}/blocks/"
        gate = asyncio.Semaphore(parallel)

        async def put(i: int) -> None:
            async with gate:
                status, body = await client.call(
                    "PUT", path + ids[i], raw=blobs[i], token=owner.token
                )
                assert status == 201, body

        async def get(i: int) -> None:
            async with gate:
                status, body = await client.call("GET", path + ids[i], token=owner.token)
                assert status == 200
                assert len(body) == size

        start = time.perf_counter()
        await asyncio.gather(*(put(i) for i in range(count)))
        put_s = time.perf_counter() - start
        start = time.perf_counter()
        await asyncio.gather(*(get(i) for i in range(count)))
        get_s = time.perf_counter() - start
        mb = count * size / 1e6
        return mb / put_s, mb / get_s


async def subscribers(base: str, pid: int, n: int) -> tuple[int, float, float]:
    """(subscribers held, RSS KiB per idle subscriber, fan-out p99 ms of one append)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(session, base)
        owner = Writer()
        await owner.login(client)
        share, _ = await make_share(client, owner, [])
        headers = {"Authorization": f"Bearer {owner.token}"}
        hello = pack({"type": "subscribe", "cursors": {share.hex(): 0}})
        await asyncio.sleep(0.5)
        rss_before = _rss_bytes(pid)
        sockets: list[aiohttp.ClientWebSocketResponse] = []

        async def connect() -> None:
            ws = await session.ws_connect(base + "/v1/ws", headers=headers, heartbeat=None)
            await ws.send_bytes(hello)
            await ws.receive_bytes(timeout=60)
            sockets.append(ws)

        for start in range(0, n, 250):
            results = await asyncio.gather(
                *(connect() for _ in range(min(250, n - start))), return_exceptions=True
            )
            if any(isinstance(r, BaseException) for r in results):
                break
        await asyncio.sleep(1.0)
        held = len(sockets)
        rss_per = (_rss_bytes(pid) - rss_before) / max(held, 1) / 1024

        arrivals: list[float] = []

        async def wait_one(ws: aiohttp.ClientWebSocketResponse) -> None:
            await ws.receive_bytes(timeout=60)
            arrivals.append(time.perf_counter())

        waiters = [asyncio.create_task(wait_one(ws)) for ws in sockets]
        await asyncio.sleep(0.2)
        env = owner.envelopes(share, os.urandom(32), 0, 1)[0]
        sent = time.perf_counter()
        status, _ = await client.call(
            "POST",
            f"/v1/shares/{share.hex()}/envelopes",
            {"envelopes": [{"envelope": env}]},
            owner.token,
        )
        assert status == 200
        await asyncio.gather(*waiters, return_exceptions=True)
        latencies = sorted((t - sent) * 1000 for t in arrivals)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0
        for ws in sockets:
            await ws.close()
        return held, rss_per, p99


async def _pg_schema(sql: str) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
    return True


async def run(bench: Bench) -> None:
    with tempfile.TemporaryDirectory(prefix="drift-bench-relay-") as tmp:
        root = Path(tmp)
        async with relay_process(root / "sqlite", {}) as (base, pid):
            n = bench.pick(smoke=50, full=10_000)
            held, rss_per, p99 = await subscribers(base, pid, n)
            bench.figure("ws_subscribers_held", held, "subs", f"of {n} attempted, one process")
            bench.figure("rss_per_idle_subscriber_kib", rss_per, "KiB", "relay RSS growth / subs")
            bench.figure("fanout_p99_ms", p99, "ms", f"one append to {held} subscribers")
        async with relay_process(root / "sqlite2", {}) as (base, pid):
            writers, each = bench.pick(smoke=(2, 50), full=(16, 400))
            cpu_before = _cpu_s(pid)
            rate = await appends_per_s(base, writers, each)
            cpu_us = (_cpu_s(pid) - cpu_before) / (writers * each) * 1e6
            load = os.getloadavg()[0]
            bench.figure(
                "appends_per_s_sqlite",
                rate,
                "1/s",
                f"{writers} writers, 1 envelope/request, WAL + synchronous=FULL, group commit; "
                f"load average {load:.1f} on {os.cpu_count()} cores",
            )
            bench.figure(
                "relay_cpu_us_per_append_sqlite",
                cpu_us,
                "us",
                "relay process CPU per single-envelope append (HTTP, verify, commit)",
            )
            rate = await appends_per_s(base, writers, each, batch=10)
            bench.figure(
                "appends_per_s_sqlite_batch10",
                rate,
                "1/s",
                f"{writers} writers, 10 envelopes/request, WAL + synchronous=FULL",
            )
            count, size = bench.pick(smoke=(8, 1 << 20), full=(96, 4 << 20))
            put, get = await blocks_mb_s(base, count, size, 8)
            bench.figure("block_put_mb_s", put, "MB/s", f"{count} x {size >> 20} MiB, 8 parallel")
            bench.figure("block_get_mb_s", get, "MB/s", f"{count} x {size >> 20} MiB, 8 parallel")
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        if await _pg_schema(f'CREATE SCHEMA "{schema}"'):
            key = root / "jwt.key"
            key.write_text("k" * 64)
            extra = {"database_url": f"{PG_URL}?schema={schema}", "jwt_key_file": str(key)}
            try:
                async with relay_process(root / "pg", extra) as (base, _):
                    writers, each = bench.pick(smoke=(2, 50), full=(16, 400))
                    rate = await appends_per_s(base, writers, each)
                    bench.figure(
                        "appends_per_s_postgres",
                        rate,
                        "1/s",
                        f"{writers} writers, 1 envelope/request, synchronous_commit=on",
                    )
            finally:
                await _pg_schema(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        else:
            print("PostgreSQL not reachable: appends_per_s_postgres not measured", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    bench, _ = Bench.from_argv("relay", argv, argparse.ArgumentParser(prog="benchmarks.relay"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 10k sockets, each side
    try:
        asyncio.run(run(bench))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return bench.finish()


if __name__ == "__main__":
    sys.exit(main())
