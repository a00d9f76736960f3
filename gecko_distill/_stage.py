"""The resumable shard loop shared by the LLM stages.

Work is cut into fixed shards (a pure function of the inputs and config). Each finished shard is written
atomically; on resume, finished shards are skipped, so no row is computed or written twice. The
``executor`` decides where shards run: here in-process, or on a Ray actor pool (see ``executors``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from tqdm.auto import tqdm

from gecko_distill.artifacts import StageDir

__all__ = ["LLMShardWork", "ShardRunner", "run_shards", "shard_slices"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class LLMShardWork(Generic[T]):
    """A shard's work split at its LLM call, so that an executor can run the call in another process.

    Locally ``work(batch, start)`` is ``finish(batch, start, call(llm, request(batch, start)))``. A remote
    runner ships only ``request``'s payload and ``call`` (both picklable, small: prompt texts, not the
    corpus) to workers that hold their own backend, and runs ``finish`` back on the driver, so the rows
    (and the shard files) come out exactly as in-process.
    """

    llm: Any  # the driver's LLMBackend: used when run locally, and its fingerprint checks the workers'
    request: Callable[[Sequence[T], int], Any]  # driver: shard items -> picklable LLM payload
    call: Callable[[Any, Any], Any]  # anywhere: (llm, payload) -> picklable LLM outputs
    finish: Callable[[Sequence[T], int, Any], list[dict[str, Any]]]  # driver: outputs -> shard rows

    def __call__(self, batch: Sequence[T], start: int) -> list[dict[str, Any]]:
        return self.finish(batch, start, self.call(self.llm, self.request(batch, start)))


class ShardRunner(Protocol):
    """Runs shard tasks ``(index, items, first item index)`` somewhere; yields ``(index, rows)``, any order."""

    def __call__(self, tasks: list[tuple[int, Sequence[Any], int]],
                 work: Callable[[Sequence[Any], int], list[dict[str, Any]]]
                 ) -> Iterable[tuple[int, list[dict[str, Any]]]]: ...


def shard_slices(n: int, shard_size: int) -> list[slice]:
    return [slice(i, min(i + shard_size, n)) for i in range(0, n, shard_size)]


def run_shards(
    stage: StageDir,
    items: Sequence[T],
    shard_size: int,
    work: Callable[[Sequence[T], int], list[dict[str, Any]]],
    *,
    desc: str,
    progress: bool = True,
    runner: ShardRunner | None = None,
) -> int:
    """Run ``work(items[shard], first_index)`` for every shard not yet on disk; return the shard count.

    ``runner`` (default: in this process, in shard order) may run the shards elsewhere and return them in
    any order; each shard is still written here, atomically, as soon as it arrives.
    """
    slices = shard_slices(len(items), shard_size)
    todo = [i for i in range(len(slices)) if not stage.has_shard(i)]
    if len(todo) < len(slices):
        logger.info("%s: resuming, %d of %d shards already done", desc, len(slices) - len(todo), len(slices))
    with tqdm(total=len(items), desc=desc, unit="row", disable=not progress,
              initial=sum(slices[i].stop - slices[i].start for i in range(len(slices)) if i not in todo)) as bar:
        tasks = [(i, items[slices[i]], slices[i].start) for i in todo]
        done = runner(tasks, work) if runner is not None else ((i, work(b, s)) for i, b, s in tasks)
        for i, rows in done:
            stage.write_shard(i, rows)
            bar.update(slices[i].stop - slices[i].start)
    return len(slices)
