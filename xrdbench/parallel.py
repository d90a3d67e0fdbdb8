"""Ordered parallel map over worker processes, the one way every stage spreads work over ``threads``."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm


def ordered_map(function: Callable, items: Iterable, *, threads: int = 1, chunksize: int = 1,
                desc: str | None = None, unit: str = "it", progress: bool = True) -> list:
    """``[function(item) for item in items]``, in order, over ``threads`` worker processes.

    With ``threads`` ≤ 1 (or a single item) everything runs in this process. Workers
    are spawned, not forked: forking a parent that already runs pyarrow or OpenMP
    threads can deadlock. ``function`` must therefore be importable (module level).
    """
    items = list(items)
    bar = dict(total=len(items), desc=desc, unit=unit, disable=not progress)
    if threads <= 1 or len(items) <= 1:
        return [function(item) for item in tqdm(items, **bar)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=threads, mp_context=context) as pool:
        return list(tqdm(pool.map(function, items, chunksize=chunksize), **bar))
