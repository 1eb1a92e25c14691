"""A campaign: many seeds in worker processes, and the summary of what they did and found.

Workers are separate processes started with ``PYTHONHASHSEED=0`` (set before the interpreter
starts, which is the only way it takes effect), so a seed replays the same in a worker and in
``drift simulate --seed N``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import gc
import itertools
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field

from simulations.harness import Outcome, Stats

HASH_SEED = "0"
SLOWEST_NAMED = 3  # seeds named in the summary as the slowest to converge
# A seed allocates millions of short-lived objects (aiohttp requests, handles, codec dicts) that
# die young: with the default first threshold of 700 the collector ran ~70 times per seed and
# cost ~4% of its CPU. A larger one collects as much, less often; cycles still go at the end of
# each run (the loop's shutdown collects in full).
GC_THRESHOLDS = (20_000, 20, 50)


@dataclass(frozen=True, slots=True)
class SeedResult:
    """What a worker sends back for one seed (small and picklable)."""

    seed: int
    ok: bool
    failures: tuple[str, ...]
    stats: dict[str, float | int | None]
    trace_hash: str
    wall_s: float


Options = dict[str, int | bool | str] | None
Worker = Callable[[int, Options], SeedResult]


@dataclass
class Summary:
    results: list[SeedResult] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> list[SeedResult]:
        return [r for r in self.results if not r.ok]

    def total(self, name: str) -> float:
        return sum(float(r.stats.get(name) or 0) for r in self.results)

    def share_with(self, name: str) -> float:
        if not self.results:
            return 0.0
        return sum(1 for r in self.results if (r.stats.get(name) or 0) > 0) / len(self.results)

    def lines(self) -> list[str]:
        n = len(self.results)
        # A seed whose worker died brought no counters back: it counts as a failure, not as a
        # seed that played no operations.
        ops = [int(r.stats.get("operations") or 0) for r in self.results if r.stats]
        times = [
            float(r.stats["convergence_s"])  # type: ignore[arg-type]
            for r in self.results
            if r.stats.get("convergence_s") is not None
        ]
        failed_seeds = ", ".join(str(r.seed) for r in self.failed[:50])
        out = [
            f"seeds: {n} in {self.wall_s:.1f} s wall "
            f"({(self.wall_s / n if n else 0):.2f} s per seed per campaign)",
            f"failures: {len(self.failed)}" + (f" (seeds {failed_seeds})" if self.failed else ""),
            f"operations: {sum(ops)} total, min {min(ops, default=0)} per seed, "
            f"mean {sum(ops) / len(ops) if ops else 0:.0f}",
            f"partitions: {int(self.total('partitions'))} "
            f"(in {self.share_with('partitions'):.0%} of seeds)",
            f"crashes: {int(self.total('crashes'))} (in {self.share_with('crashes'):.0%} of seeds)",
            f"removals: {int(self.total('removals'))} "
            f"(in {self.share_with('removals'):.0%} of seeds), "
            f"{int(self.total('rotations'))} of them with a key rotation",
            f"conflicted copies at the end: {int(self.total('conflicts'))}",
            f"cycles attempted: {int(self.total('cycles_attempted'))}",
            f"edit-vs-delete races: {int(self.total('edit_delete_races'))}",
            "convergence after heal (virtual s): "
            + (
                f"mean {sum(times) / len(times):.2f}, max {max(times):.2f}"
                if times
                else "never reached"
            ),
            f"bytes: LAN {int(self.total('bytes_lan'))}, relay {int(self.total('bytes_relay'))}",
        ]
        slowest = sorted(
            (r for r in self.results if r.stats.get("convergence_s") is not None),
            key=lambda r: (-float(r.stats["convergence_s"]), r.seed),  # type: ignore[arg-type]
        )[:SLOWEST_NAMED]
        if slowest:
            # The seeds to replay when a convergence time looks wrong (a device left unwoken).
            out.append(
                "slowest to converge: "
                + ", ".join(
                    f"seed {r.seed} {float(r.stats['convergence_s']):.1f} s"  # type: ignore[arg-type]
                    for r in slowest
                )
            )
        kinds: dict[str, int] = {}
        for result in self.failed:
            for failure in result.failures:
                kind = failure.partition(":")[0]
                kinds[kind] = kinds.get(kind, 0) + 1
        if kinds:
            out.append(
                "failed invariants: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            )
        return out

    def points(self) -> list[tuple[float, float]]:
        """(partition length, convergence time) per seed that had a partition and converged."""
        return [
            (float(r.stats["partition_s"] or 0), float(r.stats["convergence_s"]))  # type: ignore[arg-type]
            for r in self.results
            if (r.stats.get("partition_s") or 0) > 0 and r.stats.get("convergence_s") is not None
        ]


def result_of(outcome: Outcome, wall_s: float) -> SeedResult:
    failures = tuple(str(v) for v in outcome.violations)
    if outcome.error is not None:
        failures += (f"error: {outcome.error}",)
    return SeedResult(
        outcome.seed, outcome.ok, failures, _stats(outcome.stats), outcome.trace_hash, wall_s
    )


def _stats(stats: Stats) -> dict[str, float | int | None]:
    return dict(asdict(stats))


def run_one(seed: int, options: Options = None) -> SeedResult:
    """One seed in a worker (imported lazily: workers start from a clean interpreter);
    ``options`` go to :func:`simulations.schedule.generate`."""
    from simulations.scenario import run_seed
    from simulations.schedule import generate

    _freeze_imports()
    started = time.perf_counter()
    try:
        outcome = run_seed(seed, schedule=generate(seed, **(options or {})))  # type: ignore[arg-type]
    except BaseException as exc:  # never take the pool down: the seed failed, say how
        return SeedResult(
            seed,
            False,
            (f"error: {type(exc).__name__}: {exc}",),
            {},
            "",
            time.perf_counter() - started,
        )
    return result_of(outcome, time.perf_counter() - started)


@functools.cache
def _freeze_imports() -> None:
    """Once per worker: what the imports built lives as long as the worker, so the garbage
    collector need not scan it again (each run ends with a full collection)."""
    gc.collect()
    gc.freeze()
    tune_gc()


def tune_gc() -> None:
    """Collect less often in a process that runs seeds (see ``GC_THRESHOLDS``)."""
    gc.set_threshold(*GC_THRESHOLDS)


def run_campaign(
    seeds: Iterable[int],
    jobs: int,
    *,
    options: Options = None,
    progress: Callable[[SeedResult], None] = lambda _: None,
    worker: Worker | None = None,
) -> Summary:
    """Run ``seeds`` in ``jobs`` worker processes; results come back in seed order.

    A worker that dies (killed, out of memory, a crash in native code) takes its pool down
    with every seed in flight. Those seeds run again one at a time in a fresh worker, so the
    one that kills its worker is named as a failure and the innocent ones still count; the
    campaign goes on with a new pool. ``worker`` (default :func:`run_one`) must be picklable.
    """
    worker = worker or run_one
    queue = list(seeds)
    summary = Summary()
    started = time.perf_counter()
    saved = os.environ.get("PYTHONHASHSEED")
    os.environ["PYTHONHASHSEED"] = HASH_SEED  # inherited by the spawned workers
    try:
        done: dict[int, SeedResult] = {}
        order = list(queue)
        emitted = 0
        while queue:
            for result in _run_pool(worker, queue, jobs, options):
                done[result.seed] = result
                while emitted < len(order) and order[emitted] in done:
                    summary.results.append(done[order[emitted]])
                    progress(done[order[emitted]])
                    emitted += 1
            queue = [s for s in queue if s not in done]
            for seed in queue[:jobs]:  # in flight when the pool broke: one by one
                result = _run_alone(worker, seed, options)
                done[result.seed] = result
            queue = [s for s in queue if s not in done]
            while emitted < len(order) and order[emitted] in done:
                summary.results.append(done[order[emitted]])
                progress(done[order[emitted]])
                emitted += 1
    finally:
        if saved is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = saved
    summary.wall_s = time.perf_counter() - started
    return summary


def _pool(jobs: int) -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn")
    )


def _run_pool(
    worker: Worker, seeds: list[int], jobs: int, options: Options
) -> Iterator[SeedResult]:
    """Results as they finish, until the seeds run out or a worker dies."""
    with _pool(jobs) as pool:
        pending = iter(seeds)
        running: set[concurrent.futures.Future[SeedResult]] = set()
        try:
            for seed in itertools.islice(pending, 2 * jobs):
                running.add(pool.submit(worker, seed, options))
            while running:
                finished, running = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in sorted(finished, key=id):
                    yield future.result()
                    for seed in itertools.islice(pending, 1):
                        running.add(pool.submit(worker, seed, options))
        except BrokenProcessPool:
            for future in running:
                future.cancel()


def _run_alone(worker: Worker, seed: int, options: Options) -> SeedResult:
    started = time.perf_counter()
    try:
        with _pool(1) as pool:
            return pool.submit(worker, seed, options).result()
    except BrokenProcessPool as exc:
        return SeedResult(
            seed,
            False,
            (f"error: the worker process died running this seed ({exc})",),
            {},
            "",
            time.perf_counter() - started,
        )
