"""Low-latency change detection: watchdog events on the folder set the share's pass trigger.

The watcher only says "something changed"; the pass finds what by comparing with the base, so a
lost or coalesced event costs nothing but latency (the periodic rescan is the safety net). When the
OS runs out of watches (inotify's ``max_user_watches``), ``start`` returns False and ``problem``
says what to do; the share then syncs on the rescan interval alone.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

logger = logging.getLogger("peer.engine")


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, trigger: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        self.root = str(root)
        self.trigger = trigger
        self.loop = loop

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = str(event.src_path)
        relative = path[len(self.root) :].lstrip("/")
        if relative == ".drift" or relative.startswith(".drift/") or ".drift-tmp" in relative:
            return
        if event.event_type in ("opened", "closed_no_write"):
            return
        self.loop.call_soon_threadsafe(self.trigger.set)


class FolderWatch:
    def __init__(self, root: Path, trigger: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        self.root = root
        self.handler = _Handler(root, trigger, loop)
        self.observer: Observer | None = None  # type: ignore[valid-type]
        self.problem = ""

    def start(self) -> bool:
        observer = Observer()
        try:
            observer.schedule(self.handler, str(self.root), recursive=True)
            observer.start()
        except OSError as exc:
            self.problem = (
                f"watching {self.root} for changes failed ({exc}); changes are picked up by the "
                "periodic rescan only. On Linux raise fs.inotify.max_user_watches"
            )
            logger.warning(self.problem)
            return False
        self.observer = observer
        return True

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None
