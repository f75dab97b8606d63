"""Group commit into the inbox: a request is acknowledged only once its item is on disk.

Requests arriving together share one SQLite transaction (and one fsync), so durability does not
cost one disk flush per request. One thread owns the writes, so they never contend.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from feedback.inbox import Inbox

Item = tuple[str, str, datetime, dict[str, Any]]
MAX_BATCH = 500


class InboxWriter:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[None]]] = asyncio.Queue()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-writer")
        self._task: asyncio.Task[None] | None = None
        self._con: sqlite3.Connection | None = None  # used only on the writer thread

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        self._thread.shutdown(wait=True)

    async def put(self, kind: str, key: str, at: datetime, payload: dict[str, Any]) -> None:
        """Return once the item is durably stored (or was already there)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(((kind, key, at, payload), done))
        await done

    async def run_in_writer(self, function: Any, *args: Any) -> Any:
        """Run other inbox work on the writer's thread, in order with the writes."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    def _write(self, items: list[Item]) -> int:
        """On the writer thread, with the connection that thread keeps."""
        if self._con is None:
            self._con = self.inbox.connect()
        return self.inbox.put_many(items, self._con)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            try:
                await self.run_in_writer(self._write, [item for item, _ in batch])
            except Exception as exc:  # every waiting request learns of the failure
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
