"""Rendering speed (FPS, Table 1)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Timing:
    """``fps``: frames per second; ``seconds_per_call``: mean wall time of one call after warm-up."""

    fps: float
    seconds_per_call: float
    iters: int
    frames_per_call: int

    def __float__(self) -> float:
        return self.fps


def _default_sync() -> Callable[[], None] | None:
    import torch

    return torch.cuda.synchronize if torch.cuda.is_available() and torch.cuda.is_initialized() else None


def fps(
    fn: Callable[[], object],
    warmup: int = 3,
    iters: int = 10,
    frames_per_call: int = 1,
    synchronize: Callable[[], None] | None = None,
    progress: bool = False,
) -> Timing:
    """Time ``fn()`` (one call renders ``frames_per_call`` frames): ``warmup`` untimed calls, then ``iters``
    timed ones; FPS = ``iters * frames_per_call / elapsed``.

    GPU work is asynchronous: ``synchronize`` (default ``torch.cuda.synchronize`` when CUDA is in use) is
    called before the clock starts and before it stops, so the time covers the finished frames.
    """
    if iters < 1 or warmup < 0 or frames_per_call < 1:
        raise ValueError(
            f"need iters >= 1, warmup >= 0, frames_per_call >= 1; got {iters}, {warmup}, {frames_per_call}"
        )
    sync = synchronize if synchronize is not None else _default_sync()
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    start = time.perf_counter()
    for _ in tqdm(range(iters), desc="timing", disable=not progress):
        fn()
    if sync:
        sync()
    elapsed = time.perf_counter() - start
    per_call = elapsed / iters
    return Timing(
        fps=iters * frames_per_call / elapsed if elapsed > 0 else float("inf"),
        seconds_per_call=per_call,
        iters=iters,
        frames_per_call=frames_per_call,
    )
