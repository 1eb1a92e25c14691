"""The real relay (``create_app``) served on a simulated host, with what the checker reads from it.

Seams: the in-memory database (``memory:``), a block directory under the run's scratch directory
(``storage`` has no in-memory block store; the directory store runs inline through the executor),
the seeded random source, ``SimClock`` and ``InlineExecutor``. The token-signing key comes from the
seed too: left empty, the relay would draw it from ``secrets`` (``relay/runtime.py``,
``local_jwt_key``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from protocol.envelope import Envelope
from relay.http import create_app
from relay.http.context import SERVICE
from relay.runtime import Seams
from relay.service import RelayService
from relay.settings import JwtKey, Settings
from seams import InlineExecutor, RandomSource
from simulations.runtime.aiohttp_sim import SimSite
from simulations.runtime.clock import SimClock
from simulations.runtime.network import SimHost

RELAY_HOST = "relay"
RELAY_PORT = 80
RELAY_URL = f"http://{RELAY_HOST}:{RELAY_PORT}"


@dataclass(frozen=True, slots=True)
class LoggedEnvelope:
    """One row of the relay's update log, with the header fields the checker needs."""

    seq: int
    device: str  # hex device id
    counter: int
    height: int
    epoch: int
    envelope_hash: bytes


class SimRelay:
    def __init__(self, host: SimHost, scratch: Path, clock: SimClock, rng: RandomSource) -> None:
        self.host = host
        self.settings = Settings(
            host="127.0.0.1",  # never bound: the site below serves the simulated host
            port=RELAY_PORT,
            origin=RELAY_URL,
            data_dir=scratch,
            database_url="memory:",
            blocks_url=f"file://{scratch / 'blocks'}",
            s3_presign=False,
            jwt_keys=(JwtKey("sim", rng.bytes(32)),),
            heartbeat_s=10.0,
            writes_per_minute_per_user=1_000_000_000,
        )
        self.seams = Seams(clock, rng, InlineExecutor())
        self._runner: web.AppRunner | None = None
        # Each check reads the whole log again: what was decoded once, by its exact bytes.
        self._decoded: dict[tuple[int, bytes], LoggedEnvelope] = {}
        self._site: SimSite | None = None

    async def start(self) -> None:
        app = create_app(self.settings, self.seams)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._site = SimSite(self._runner, self.host, RELAY_PORT)
        await self._site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def service(self) -> RelayService:
        assert self._runner is not None, "the relay is not running"
        return self._runner.app[SERVICE]

    # -- what the checker reads ------------------------------------------------------------------

    async def log(self, share: str) -> list[LoggedEnvelope]:
        async with self.service.db.read() as tx:
            rows = await tx.fetchall(
                "SELECT seq, body FROM envelopes WHERE share_id = ? ORDER BY seq", share
            )
        out = []
        for seq, body in rows:
            raw = bytes(body)  # type: ignore[arg-type]
            logged = self._decoded.get((int(seq), raw))  # type: ignore[call-overload]
            if logged is None:
                envelope = Envelope.decode(raw)
                header = envelope.header
                logged = LoggedEnvelope(
                    int(seq),  # type: ignore[call-overload]
                    header.device.hex(),
                    header.counter,
                    header.height,
                    header.epoch,
                    envelope.envelope_hash,
                )
                self._decoded[(logged.seq, raw)] = logged
            out.append(logged)
        return out

    async def vector(self, share: str) -> dict[str, int]:
        async with self.service.db.read() as tx:
            rows = await tx.fetchall(
                "SELECT device_id, counter FROM share_vectors WHERE share_id = ?", share
            )
        return {str(d): int(c) for d, c in rows}  # type: ignore[call-overload]

    async def last_seq(self, share: str) -> int:
        async with self.service.db.read() as tx:
            row = await tx.fetchone("SELECT last_seq FROM shares WHERE share_id = ?", share)
        return 0 if row is None else int(row[0])  # type: ignore[call-overload]

    async def chain_height(self, share: str) -> int:
        async with self.service.db.read() as tx:
            row = await tx.fetchone("SELECT chain_height FROM shares WHERE share_id = ?", share)
        assert row is not None, f"the relay has no share {share}"
        return int(row[0])  # type: ignore[call-overload]
