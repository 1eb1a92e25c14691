"""The virtual-time loop: stock asyncio semantics, virtual clock, loud failures."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time

import pytest

from seams import InlineExecutor
from simulations.runtime import (
    DEFAULT_EPOCH_MS,
    BudgetExceeded,
    Deadlock,
    RealIoRefused,
    SimClock,
    SimulationError,
    UnhandledErrors,
    run,
)


def test_an_idle_hour_takes_no_wall_time() -> None:
    async def heartbeat_for_an_hour() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        beats = 0
        while loop.time() < 3600:
            await asyncio.sleep(5)
            beats += 1
        return loop.time(), beats

    started = time.monotonic()
    virtual, beats = run(heartbeat_for_an_hour())
    assert (virtual, beats) == (3600.0, 720)
    assert time.monotonic() - started < 5.0


def test_time_lands_exactly_on_each_deadline() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        for delay in (0.1, 0.2, 1e-6, 7.25, 0.3):
            await asyncio.sleep(delay)
            seen.append(loop.time())
        return seen

    assert run(main()) == pytest.approx([0.1, 0.3, 0.300001, 7.550001, 7.850001], abs=1e-12)


def test_time_starts_where_asked() -> None:
    async def main() -> float:
        await asyncio.sleep(1)
        return asyncio.get_running_loop().time()

    assert run(main(), start_s=100.0) == 101.0


def test_simultaneous_timers_fire_in_the_order_they_were_set() -> None:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        order: list[int] = []
        for i in range(50):
            loop.call_later(1.0, order.append, i)
        loop.call_at(1.0, order.append, 50)
        await asyncio.sleep(2)
        return order

    assert run(main()) == list(range(51))


def _simultaneous_order(seed: int) -> list[int]:
    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        order: list[int] = []
        for i in range(20):
            loop.call_later(1.0, order.append, i)
        await asyncio.sleep(2)
        return order

    return run(main(), seed=seed, ties="seeded")


def test_seeded_ties_replay_per_seed_and_differ_across_seeds() -> None:
    orders = [_simultaneous_order(seed) for seed in range(5)]
    assert orders == [_simultaneous_order(seed) for seed in range(5)]
    assert all(sorted(order) == list(range(20)) for order in orders)
    assert len({tuple(order) for order in orders}) == 5


def test_seeded_ties_need_a_seed() -> None:
    with pytest.raises(SimulationError, match="needs a SeededRandom"):
        run(asyncio.sleep(0), ties="seeded")


def test_call_soon_is_fifo_and_runs_before_time_moves() -> None:
    async def main() -> tuple[list[str], float]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        loop.call_later(0.0, order.append, "timer")
        for name in "abc":
            loop.call_soon(order.append, name)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return order, loop.time()

    assert run(main()) == (["a", "b", "c", "timer"], 0.0)


def test_cancelled_timers_never_fire_and_do_not_move_time() -> None:
    async def main() -> tuple[list[str], float]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        loop.call_later(100, fired.append, "late").cancel()
        loop.call_later(1, fired.append, "early")
        await asyncio.sleep(2)
        return fired, loop.time()

    assert run(main()) == (["early"], 2.0)


def test_wait_for_times_out_exactly_at_its_deadline() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), timeout=2.5)
        return loop.time()

    assert run(main()) == 2.5


def test_wait_for_returns_when_the_work_finishes_first() -> None:
    async def work() -> str:
        await asyncio.sleep(1)
        return "done"

    async def main() -> tuple[str, float]:
        result = await asyncio.wait_for(work(), timeout=5)
        return result, asyncio.get_running_loop().time()

    assert run(main()) == ("done", 1.0)


def test_asyncio_timeout_cancels_the_block_at_the_deadline() -> None:
    async def main() -> tuple[bool, float]:
        cancelled = False
        try:
            async with asyncio.timeout(3):
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    cancelled = True
                    raise
        except TimeoutError:
            return cancelled, asyncio.get_running_loop().time()
        raise AssertionError("the timeout did not fire")

    assert run(main()) == (True, 3.0)


def test_events_and_queues_wake_waiters_at_virtual_times() -> None:
    async def main() -> list[tuple[float, str]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        ready = asyncio.Event()
        log: list[tuple[float, str]] = []

        async def producer() -> None:
            await ready.wait()
            for item in ("x", "y", "z"):
                await queue.put(item)
                log.append((loop.time(), f"put {item}"))

        async def consumer() -> None:
            for _ in range(3):
                await asyncio.sleep(10)
                log.append((loop.time(), f"got {await queue.get()}"))

        loop.call_later(1, ready.set)
        await asyncio.gather(producer(), consumer())
        return log

    assert run(main()) == [
        (1.0, "put x"),
        (10.0, "got x"),
        (10.0, "put y"),
        (20.0, "got y"),
        (20.0, "put z"),
        (30.0, "got z"),
    ]


def test_locks_semaphores_conditions_task_groups_and_wait_on_virtual_time() -> None:
    async def main() -> list[tuple[float, str]]:
        loop = asyncio.get_running_loop()
        log: list[tuple[float, str]] = []
        lock, gate = asyncio.Lock(), asyncio.Semaphore(2)
        ready = asyncio.Condition()

        async def worker(name: str, hold_s: float) -> None:
            async with gate, lock:
                await asyncio.sleep(hold_s)
                log.append((loop.time(), f"{name} done"))

        async def notifier() -> None:
            await asyncio.sleep(5)
            async with ready:
                ready.notify_all()

        async with asyncio.TaskGroup() as group:
            for name, hold in (("a", 1.0), ("b", 2.0), ("c", 0.5)):
                group.create_task(worker(name, hold))
            group.create_task(notifier())
            async with ready:
                await ready.wait()
                log.append((loop.time(), "notified"))
        slow = asyncio.create_task(asyncio.sleep(100))
        fast = asyncio.create_task(asyncio.sleep(10))
        done, _ = await asyncio.wait({slow, fast}, return_when=asyncio.FIRST_COMPLETED)
        log.append((loop.time(), f"first of two: {'fast' if done == {fast} else 'slow'}"))
        slow.cancel()
        return log

    assert run(main()) == [
        (1.0, "a done"),
        (3.0, "b done"),
        (3.5, "c done"),
        (5.0, "notified"),
        (15.0, "first of two: fast"),
    ]


def test_a_deadlock_is_reported_with_every_pending_task() -> None:
    async def main() -> None:
        first, second = asyncio.Event(), asyncio.Event()

        async def wait_then_set(mine: asyncio.Event, other: asyncio.Event) -> None:
            await mine.wait()
            other.set()

        a = asyncio.create_task(wait_then_set(first, second), name="alice")
        b = asyncio.create_task(wait_then_set(second, first), name="bob")
        await asyncio.sleep(30)
        await asyncio.gather(a, b)

    with pytest.raises(Deadlock) as caught:
        run(main(), seed=11)
    error = caught.value
    assert error.virtual_time_s == 30.0
    assert "deadlock at t=30.000s" in str(error)
    assert any(line.startswith("alice: ") and "wait_then_set" in line for line in error.pending)
    assert any(line.startswith("bob: ") and "Event.wait" in line for line in error.pending)
    assert "SEED=11" in error.__notes__


def test_a_virtual_time_budget_stops_a_run_that_never_ends() -> None:
    async def forever() -> None:
        for _ in itertools.count():
            await asyncio.sleep(60)

    with pytest.raises(BudgetExceeded, match=r"past the budget of 3600\.000s") as caught:
        run(forever(), budget_s=3600)
    assert caught.value.virtual_time_s == 3600.0
    assert any("forever" in line for line in caught.value.pending)


def test_an_iteration_budget_stops_a_task_that_spins_without_time() -> None:
    async def spin() -> None:
        for _ in itertools.count():
            await asyncio.sleep(0)

    with pytest.raises(BudgetExceeded, match="more than 1000 loop iterations"):
        run(spin(), max_iterations=1000)


def test_leftover_tasks_are_cancelled_when_main_returns() -> None:
    cleaned: list[str] = []

    async def background() -> None:
        try:
            await asyncio.sleep(1e6)
        finally:
            cleaned.append("background")

    async def main() -> str:
        task = asyncio.create_task(background())
        await asyncio.sleep(1)
        assert not task.done()
        return "main"

    assert run(main()) == "main"
    assert cleaned == ["background"]


def test_leftover_tasks_are_cancelled_in_creation_order() -> None:
    finished: list[int] = []

    async def worker(i: int) -> None:
        try:
            await asyncio.sleep(1e6)
        finally:
            finished.append(i)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(worker(i), name=f"w{(i * 7) % 50}") for i in range(50)]
        await asyncio.sleep(1)
        assert all(not task.done() for task in tasks)

    run(main())
    assert finished == list(range(50))


def test_a_task_error_nobody_looked_at_fails_the_run() -> None:
    async def broken() -> None:
        await asyncio.sleep(1)
        raise ValueError("boom")

    async def main() -> None:
        task = asyncio.create_task(broken())
        await asyncio.sleep(5)
        assert task.done()

    with pytest.raises(UnhandledErrors, match="ValueError: boom"):
        run(main())


def test_errors_of_main_propagate_with_the_seed() -> None:
    async def main() -> None:
        await asyncio.sleep(1)
        raise KeyError("missing")

    with pytest.raises(KeyError) as caught:
        run(main(), seed=99)
    assert "SEED=99" in caught.value.__notes__


def test_blocking_calls_run_inline_on_the_loop_thread() -> None:
    async def main() -> tuple[int, int, int, float]:
        loop = asyncio.get_running_loop()
        inline = await loop.run_in_executor(None, threading.get_ident)
        to_thread = await asyncio.to_thread(threading.get_ident)
        pooled = await loop.run_in_executor(InlineExecutor().as_pool(), threading.get_ident)
        return inline, to_thread, pooled, loop.time()

    here = threading.get_ident()
    assert run(main()) == (here, here, here, 0.0)


def test_inline_executor_errors_arrive_through_the_future() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError, match="invalid literal"):
            await loop.run_in_executor(None, int, "x")
        with pytest.raises(ValueError, match="invalid literal"):
            await loop.run_in_executor(InlineExecutor().as_pool(), int, "x")

    run(main())


def test_real_thread_pools_are_refused() -> None:
    async def main() -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            await asyncio.get_running_loop().run_in_executor(pool, time.sleep, 0)

    with pytest.raises(RealIoRefused, match="ThreadPoolExecutor"):
        run(main())


def test_set_default_executor_is_refused() -> None:
    async def main() -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            asyncio.get_running_loop().set_default_executor(pool)

    with pytest.raises(RealIoRefused, match="runs inline"):
        run(main())


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("open_connection", "create_connection"),
        ("start_server", "create_server"),
        ("getaddrinfo", "getaddrinfo"),
        ("subprocess", "subprocess_exec"),
        ("reader", "add_reader"),
    ],
)
def test_real_io_is_refused(what: str, message: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def noop(reader: object, writer: object) -> None:
            return None

        if what == "open_connection":
            await asyncio.open_connection("127.0.0.1", 9)
        elif what == "start_server":
            await asyncio.start_server(noop, "127.0.0.1", 0)
        elif what == "getaddrinfo":
            await loop.getaddrinfo("example.org", 443)
        elif what == "subprocess":
            await asyncio.create_subprocess_exec("true")
        else:
            loop.add_reader(0, print)

    with pytest.raises(RealIoRefused, match=message):
        run(main())


def test_other_threads_may_not_schedule_on_the_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        errors: list[BaseException] = []

        def from_thread() -> None:
            try:
                loop.call_soon_threadsafe(print)
            except RealIoRefused as exc:
                errors.append(exc)

        thread = threading.Thread(target=from_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1
        called: list[str] = []
        loop.call_soon_threadsafe(called.append, "own thread")  # the loop's own thread may
        await asyncio.sleep(0)
        assert called == ["own thread"]

    run(main())


def test_sim_clock_reads_virtual_time_from_a_fixed_epoch() -> None:
    async def main() -> tuple[int, float, int, int]:
        clock, skewed = SimClock(), SimClock(skew_ms=-1500)
        await clock.sleep(90.5)
        return clock.now_ms(), clock.monotonic(), skewed.now_ms(), SimClock(epoch_ms=0).now_ms()

    assert run(main()) == (DEFAULT_EPOCH_MS + 90_500, 90.5, DEFAULT_EPOCH_MS + 89_000, 90_500)


async def test_sim_clock_refuses_a_real_loop() -> None:
    with pytest.raises(SimulationError, match="only means something on a VirtualTimeLoop"):
        SimClock().now_ms()


def test_sim_clock_refuses_to_be_read_without_a_loop() -> None:
    with pytest.raises(SimulationError, match="outside a running VirtualTimeLoop"):
        SimClock().monotonic()
