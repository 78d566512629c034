"""Micro-batching: the records of concurrent requests go through one feature + predict call.

Computing features and predicting costs mostly a fixed amount per call (numpy's and
LightGBM's per-call overhead), not per row: one row costs about a third of sixteen.
Requests whose bodies the event loop read in the same turn are queued here and
predicted together at the end of that turn, so an idle service adds no wait (a lone
request is flushed right after it is queued) and a busy one pays the fixed cost once
per turn instead of once per request.

Only requests for the same release whose records are null in the same fields are
merged, so the merged column batch has the columns and dtypes each request's own would
have; features are computed row by row and the estimator predicts each row on its own,
so a record's answer is the same whether it was predicted alone or merged (checked by
the service tests). A merged call that fails is retried request by request, so one
request that cannot be predicted fails alone.

The one speed trick that costs clarity lives here: a call of at least `offload_rows` rows
(`serving.offload_rows`)
computes its features on the event loop, then hands the estimator's predict to one worker
thread and answers when it is done. LightGBM predicts without the GIL, so on a second core
it predicts one call while the loop reads, validates and logs the next requests (a
100-record request spends most of its time in the booster). Smaller calls, a single
record above all, are predicted inline: a thread hand-off would cost more than it
overlaps. `benchmarks/serving.py` measures both (`cd4ml` against `cd4ml-inline`, which
serves with `serving.offload_rows: 0`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from cd4ml import runtime

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Answer:
    """What one request gets back: predictions (n,) in target units, or a classifier's (n, k) class
    probabilities, and whether each record (n,) has a value the model never saw in training (`unknown`:
    which column)."""

    predictions: np.ndarray
    fallback: np.ndarray
    unknown: dict[str, np.ndarray]


@dataclass
class _Pending:
    release: Any
    rows: Rows
    nulls: tuple[str, ...]
    future: asyncio.Future[Answer]


class MicroBatcher:
    """Queue validated records and answer them in merged calls of at most `max_rows` rows
    (a larger request goes alone). `to_batch` turns records into a column batch.

    Must be used from one event loop (the service's); `close()` stops the worker thread.
    """

    def __init__(self, max_rows: int, to_batch: Callable[[Rows], Mapping[str, np.ndarray]],
                 on_call: Callable[[], None] = lambda: None, offload_rows: int = 0,
                 history: Callable[[Any, Mapping[str, np.ndarray]], Any] = lambda release, batch: None) -> None:
        """`on_call()` is called once per merged call (a metrics counter). Calls of at least `offload_rows`
        rows predict on the worker thread (0: every call inline; the service's `serving.offload_rows`).
        `history(release, batch)`: the past values the batch's history features read (None: the release's own)."""
        self.history = history
        self.max_rows = max_rows
        self.to_batch = to_batch
        self.on_call = on_call
        self.offload_rows = offload_rows
        self._pending: list[_Pending] = []
        self._worker: ThreadPoolExecutor | None = None  # started by the first offloaded call

    async def predict(self, release: Any, rows: Rows, nulls: tuple[str, ...]) -> Answer:
        """Predictions for `rows`, whose fields in `nulls` (and no others) are None somewhere."""
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)  # runs after the handlers this turn has already started
        item = _Pending(release, rows, nulls, loop.create_future())
        self._pending.append(item)
        return await item.future

    def close(self) -> None:
        """Wait for the predictions in flight and stop the worker thread."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        open_chunks: dict[tuple[Any, ...], tuple[list[_Pending], int]] = {}  # per group: filling chunk, its rows
        full: list[list[_Pending]] = []
        for item in pending:
            key = (id(item.release), item.nulls)
            chunk, rows = open_chunks.get(key, ([], 0))
            if chunk and rows + len(item.rows) > self.max_rows:
                full.append(chunk)
                chunk, rows = [], 0
            chunk.append(item)
            open_chunks[key] = (chunk, rows + len(item.rows))
        for chunk in full + [c for c, _ in open_chunks.values()]:
            self._answer(chunk)

    def _answer(self, chunk: list[_Pending]) -> None:
        self.on_call()
        release = chunk[0].release
        try:
            batch = self.to_batch(chunk[0].rows if len(chunk) == 1 else [r for p in chunk for r in p.rows])
            X, unknown = release.features_checked(batch, self.history(release, batch))
            if 0 < self.offload_rows <= len(X):
                if self._worker is None:
                    runtime.quick_gil_handoff()
                    self._worker = ThreadPoolExecutor(1, thread_name_prefix="cd4ml-predict")
                done = asyncio.get_running_loop().run_in_executor(self._worker, release.predict_features, X)
                done.add_done_callback(lambda f: self._settle(chunk, f.exception() or f.result(), unknown))
                return
            pred = release.predict_features(X)
        except Exception as exc:
            self._settle(chunk, exc, {})
            return
        self._deliver(chunk, pred, unknown)

    def _settle(self, chunk: list[_Pending], pred: np.ndarray | BaseException, unknown: dict[str, np.ndarray]) -> None:
        """Deliver a call's outcome; a merged call that failed is predicted again one request at a time,
        so only the request that cannot be predicted gets the error (answered as a 500)."""
        if isinstance(pred, BaseException) and len(chunk) > 1:
            for p in chunk:
                self._answer([p])
            return
        self._deliver(chunk, pred, unknown)

    @staticmethod
    def _deliver(chunk: list[_Pending], pred: np.ndarray | BaseException, unknown: dict[str, np.ndarray]) -> None:
        """Each request of the call gets its slice of the answer, or the call's error."""
        if isinstance(pred, BaseException):
            for p in chunk:
                if not p.future.done():
                    p.future.set_exception(pred)
            return
        fallback = np.zeros(len(pred), dtype=bool)
        for mask in unknown.values():
            fallback |= mask
        start = 0
        for p in chunk:
            end = start + len(p.rows)
            if not p.future.done():  # the client may have gone away
                p.future.set_result(Answer(pred[start:end], fallback[start:end],
                                           {c: m[start:end] for c, m in unknown.items()}))
            start = end
