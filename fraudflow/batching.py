"""Dynamic micro-batching: concurrent score requests share one onnxruntime call, run off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fraudflow.scoring import Scorer, Scores


@dataclass
class _Pending:
    rows: npt.NDArray[np.float32]
    future: asyncio.Future[Scores]


class MicroBatcher:
    """Gathers rows for up to `max_wait_s` (or until `max_rows`), scores them in a worker thread.

    While one batch is being scored the next one fills up, so under load batches grow by themselves and an
    idle service adds at most `max_wait_s` of latency.
    """

    def __init__(
        self,
        scorer: Scorer,
        *,
        max_rows: int = 64,
        max_wait_s: float = 0.0,
        workers: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.scorer = scorer
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scoring")
        self._slots = asyncio.Semaphore(workers)
        self._on_batch = on_batch
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> MicroBatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._collector = asyncio.create_task(self._collect(), name="micro-batcher")

    async def stop(self) -> None:
        if self._collector:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def submit(self, rows: npt.NDArray[np.float32]) -> asyncio.Future[Scores]:
        """Queue a (k, 30) float32 matrix; the future resolves on the event loop with its rows' scores.

        Callers chain work onto the future with callbacks: a request then suspends only once in total.
        """
        future: asyncio.Future[Scores] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(rows, future))
        return future

    def _drain(self, batch: list[_Pending], rows: int) -> int:
        while rows < self.max_rows and not self._queue.empty():
            item = self._queue.get_nowait()
            batch.append(item)
            rows += len(item.rows)
        return rows

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch, rows = [first], len(first.rows)
            deadline = loop.time() + self.max_wait_s
            rows = self._drain(batch, rows)
            while rows < self.max_rows and (remaining := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                batch.append(item)
                rows = self._drain(batch, rows + len(item.rows))
            await self._slots.acquire()
            rows = self._drain(batch, rows)  # whatever arrived while the workers were busy rides along
            task = asyncio.create_task(self._run(batch, rows))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Pending], rows: int) -> None:
        try:
            matrix = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
            scores = await asyncio.get_running_loop().run_in_executor(self._executor, self.scorer.score_batch, matrix)
        except Exception as error:  # the callers get the error; the batcher keeps serving
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        finally:
            self._slots.release()
        if self._on_batch:
            self._on_batch(rows)
        offset = 0
        for pending in batch:
            size = len(pending.rows)
            if not pending.future.done():  # the caller may have been cancelled (client went away)
                pending.future.set_result(scores.take(slice(offset, offset + size)))
            offset += size
