"""Every error the simulation runtime raises derives from ``SimulationError``.

Network errors also derive from the builtin they stand for (``ConnectionResetError``,
``ConnectionRefusedError``, ``TimeoutError``, ``EOFError``), so code under test catches the same
exceptions on the simulated network as on a real socket and never imports this module.
"""

from __future__ import annotations


class SimulationError(Exception):
    """Base of every error raised by ``simulations.runtime``."""


class Deadlock(SimulationError):
    """Every task waits and no timer is scheduled: nothing can ever happen again."""

    def __init__(self, virtual_time_s: float, pending: list[str]) -> None:
        self.virtual_time_s = virtual_time_s
        self.pending = pending
        lines = "\n".join(f"  {p}" for p in pending) or "  (no tasks)"
        super().__init__(
            f"deadlock at t={virtual_time_s:.3f}s: every task waits and no timer is set;"
            f" pending tasks:\n{lines}"
        )


class BudgetExceeded(SimulationError):
    """The run used more virtual time or loop iterations than it was allowed."""

    def __init__(self, what: str, virtual_time_s: float, pending: list[str]) -> None:
        self.virtual_time_s = virtual_time_s
        self.pending = pending
        lines = "\n".join(f"  {p}" for p in pending) or "  (no tasks)"
        super().__init__(
            f"budget exceeded at t={virtual_time_s:.3f}s: {what}; pending tasks:\n{lines}"
        )


class RealIoRefused(SimulationError):
    """Code under simulation tried to use a real socket, thread, process or signal."""


class UnhandledErrors(SimulationError):
    """The run finished but callbacks or tasks raised errors nobody handled."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("unhandled errors during the run:\n" + "\n".join(messages))


class NetworkError(SimulationError):
    """Base of the simulated network's errors (each also a builtin ``OSError``/``EOFError``)."""


class ConnectionRefused(NetworkError, ConnectionRefusedError):
    """Nobody listens on that host and port."""


class HostUnreachable(NetworkError, TimeoutError):
    """The destination cannot be reached (partitioned, down or unknown): the connect timed out."""


class ConnectionReset(NetworkError, ConnectionResetError):
    """The connection broke: reset by the other side or timed out across a partition."""


class ConnectionClosed(NetworkError, EOFError):
    """The other side closed the connection cleanly; every frame it sent was delivered."""


class AddressInUse(NetworkError, OSError):
    """Something already listens (or is bound) on that host and port."""
