"""The change feed: a rising version the processor bumps after each committed batch.

Readers of live views wait on it instead of polling the store: one `notify()` per commit wakes every
waiter once, and a waiter that was busy sees the version has moved on and reads once for all it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class ChangeFeed:
    """A version number plus a wake-up. `notify()` may be called from any thread (the processor writes in
    a worker thread); `wait()` runs on the event loop that serves the live views."""

    def __init__(self) -> None:
        self._version = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None

    @property
    def version(self) -> int:
        return self._version

    def notify(self) -> None:
        """Record one committed change and wake the waiters."""
        with self._lock:
            self._version += 1
            loop = self._loop
        if loop is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call, so nobody waits.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    async def wait(self, after_version: int, timeout: float) -> int:
        """The current version as soon as it is above `after_version`, or after `timeout` seconds."""
        changed = self._bind()
        if self._version > after_version:
            return self._version
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)
        return self._version

    def _bind(self) -> asyncio.Event:
        """The wake-up event of the running loop (tests may run several loops one after another)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._loop is not loop or self._changed is None:
                self._loop, self._changed = loop, asyncio.Event()
            return self._changed

    def _wake(self) -> None:
        """On the loop: release everyone waiting now; later waiters get a fresh event."""
        changed, self._changed = self._changed, asyncio.Event()
        if changed is not None:
            changed.set()
