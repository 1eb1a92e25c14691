"""A Python process inside a namespace: JSON lines on stdout, a clean stop of its whole group."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


class AgentFailed(AssertionError):
    """The process died, printed something that is not JSON, or did not say what was awaited."""


class NsProcess:
    """``ip netns exec NS python -m MODULE ARGS``, in its own process group.

    Every stdout line must be a JSON object, kept in ``messages``; ``expect`` finds or awaits one
    that satisfies a predicate.
    stderr is kept for the failure message.
    """

    def __init__(self, netns: str, module: str, args: Sequence[str] = ()) -> None:
        self.netns = netns
        self.module = module
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, so a stop reaches every child
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def _failure(self, what: str) -> AgentFailed:
        return AgentFailed(
            f"{self.module} in {self.netns}: {what}\n"
            f"messages so far: {self.messages}\nstderr:\n{self.stderr[-4000:]}"
        )

    def expect(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float, what: str
    ) -> dict[str, Any]:
        """The first message, already received or still to come, that satisfies ``predicate``."""
        for message in self.messages:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(f"no message {what} within {timeout_s} s")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._proc.wait()
                raise self._failure(f"exited ({self._proc.returncode}) before {what}")
            message = self._record(line)
            if predicate(message):
                return message

    def drain(self) -> list[dict[str, Any]]:
        """Take every line printed so far into ``messages`` without waiting; all messages."""
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return self.messages
            if line is None:
                self._lines.put(None)  # keep the end marker for ``expect``
                return self.messages
            self._record(line)

    def _record(self, line: str) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except json.JSONDecodeError as exc:
            raise self._failure(f"printed a line that is not JSON: {line!r}") from exc
        self.messages.append(message)
        return message

    def wait(self, timeout_s: float) -> int:
        """Wait for a normal exit; the return code."""
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise self._failure(f"still running after {timeout_s} s") from exc

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM to the whole group, SIGKILL after ``grace_s``; idempotent."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=grace_s)
        for thread in self._threads:
            thread.join(timeout=grace_s)
