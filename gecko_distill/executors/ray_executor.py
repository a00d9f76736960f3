"""Run the LLM stages on a Ray Data actor pool (``executor = "ray"``).

How it keeps the local contract:

- **Same shard plan.** ``run_shards`` cuts the work into the same fixed shards as locally and hands only
  the *missing* ones to :class:`RayShardRunner`, so resume works the same way (and a run started locally
  can be finished on Ray, or the other way round: the stage fingerprint does not include the executor).
- **Only the LLM call moves.** For each shard the driver builds the LLM payload (prompt texts, or
  (query, candidate texts) pairs) with the stage's own ``request`` function. A Ray Data
  ``map_batches`` over an ``ActorPoolStrategy`` pool runs the stage's picklable ``call`` on it; each actor
  holds one backend built from the :class:`~gecko_distill.config.LLMConfig` by ``load_llm`` *inside the
  actor* (one llama.cpp model per actor, or one vLLM engine per GPU). The driver then runs the stage's
  ``finish`` (parsing, fusion, selection) and writes the shard atomically as it arrives, so the rows are
  produced by exactly the code of the local path, and a crash loses only shards still in flight.
- **Same model.** Every actor checks that its backend's fingerprint equals the driver's, so a node that
  resolved a different model file fails loudly instead of mixing models into one dataset.

A shard is one backend call in both executors (the same prompts in the same batch), so scores do not
depend on how shards are spread over actors. The corpus and the embedder stay on the driver: neighbour
search is cheap next to LLM scoring (see docs/scaling.md for the numbers and for ``ray.data.llm``).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from gecko_distill._stage import LLMShardWork
from gecko_distill.errors import BackendError, BackendUnavailable, GeckoDistillError

if TYPE_CHECKING:
    from gecko_distill.config import LLMConfig, PipelineConfig, RayConfig
    from gecko_distill.generation import GenerationResult
    from gecko_distill.mining import MiningResult

__all__ = ["RayExecutor", "RayShardRunner", "worker_llm_config"]

logger = logging.getLogger(__name__)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError as e:
        raise BackendUnavailable("executor = 'ray' needs Ray Data: pip install 'gecko-distill[ray]' "
                                 "(ray[data]==2.60.0), or set executor = 'local'") from e
    return ray


def ensure_ray(cfg: RayConfig) -> None:
    """Join ``cfg.address`` (or ``RAY_ADDRESS``), or start a local instance; no-op if Ray is already up."""
    ray = _import_ray()
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    logger.info("ray: %s", f"joining {address}" if address else "starting a local instance")
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)


def worker_llm_config(llm: LLMConfig, cfg: RayConfig) -> LLMConfig:
    """The LLMConfig an actor builds its backend from: llama.cpp gets as many threads as the actor has CPUs
    (unless ``llm.n_threads`` is set), so actors on one node do not oversubscribe its cores."""
    if llm.backend == "llamacpp" and llm.n_threads is None:
        return llm.model_copy(update={"n_threads": max(1, int(cfg.num_cpus_per_worker))})
    return llm


class _LLMActor:
    """One Ray Data actor: loads a backend once, then runs the stage's LLM call on each shard's payload."""

    def __init__(self, llm_config: dict[str, Any], call: Callable[[Any, Any], Any],
                 expected_fingerprint: str) -> None:
        from gecko_distill.config import LLMConfig
        from gecko_distill.llm import load_llm

        self.llm = load_llm(LLMConfig.model_validate(llm_config))
        if self.llm.fingerprint != expected_fingerprint:
            raise BackendError(f"Ray worker on {os.uname().nodename} loaded {self.llm.fingerprint!r}, but "
                               f"the driver uses {expected_fingerprint!r}: give every node the same model")
        self.call = call

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        # One row = one shard = one backend call, exactly as in the local executor.
        results = [pickle.dumps(self.call(self.llm, pickle.loads(p)), protocol=pickle.HIGHEST_PROTOCOL)
                   for p in batch["payload"]]
        return {"shard": list(batch["shard"]), "result": results}


class RayShardRunner:
    """A :class:`~gecko_distill._stage.ShardRunner` that runs shards' LLM calls on a Ray Data actor pool."""

    def __init__(self, llm: LLMConfig, cfg: RayConfig) -> None:
        self.llm = llm
        self.cfg = cfg

    def __call__(self, tasks: list[tuple[int, Sequence[Any], int]],
                 work: Callable[[Sequence[Any], int], list[dict[str, Any]]],
                 ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        if not isinstance(work, LLMShardWork):
            raise TypeError("the Ray executor runs LLM stages only (work must be an LLMShardWork)")
        if not tasks:
            return
        ensure_ray(self.cfg)
        w = self.cfg.window_shards
        for lo in range(0, len(tasks), w):
            yield from self._run_window(tasks[lo : lo + w], work)

    def _run_window(self, tasks: list[tuple[int, Sequence[Any], int]],
                    work: LLMShardWork[Any]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        bars, ctx.enable_progress_bars = ctx.enable_progress_bars, False  # the stage's own bar counts rows
        by_shard = {i: (batch, start) for i, batch, start in tasks}
        dump = pickle.HIGHEST_PROTOCOL
        items = [{"shard": i, "payload": pickle.dumps(work.request(batch, start), protocol=dump)}
                 for i, batch, start in tasks]
        ds = ray.data.from_items(items, override_num_blocks=len(items))  # one shard per block: fine-grained
        ds = ds.map_batches(
            _LLMActor,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(self.cfg.num_workers, len(items))),
            num_cpus=self.cfg.num_cpus_per_worker,
            num_gpus=self.cfg.num_gpus_per_worker or None,
            fn_constructor_kwargs={
                "llm_config": worker_llm_config(self.llm, self.cfg).model_dump(),
                "call": work.call,
                "expected_fingerprint": work.llm.fingerprint,
            },
        )
        logger.info("ray: %d shards on %d actors (%s CPU, %s GPU each)", len(items), min(self.cfg.num_workers,
                    len(items)), self.cfg.num_cpus_per_worker, self.cfg.num_gpus_per_worker)
        try:
            for row in ds.iter_rows():
                i = int(row["shard"])
                batch, start = by_shard[i]
                yield i, work.finish(batch, start, pickle.loads(row["result"]))
        except GeckoDistillError:
            raise
        except Exception as e:  # Ray wraps worker errors; surface ours by type, the rest as BackendError
            cause = _gecko_cause(e)
            if cause is not None:
                raise cause from e
            raise BackendError(f"a Ray worker failed ({type(e).__name__}: {_first_line(e)}); finished shards "
                               "are kept, rerun the same command to resume") from e
        finally:
            ctx.enable_progress_bars = bars


def _gecko_cause(e: BaseException) -> GeckoDistillError | None:
    """The GeckoDistillError a Ray worker raised, if any (Ray chains or wraps the original exception)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, GeckoDistillError):
            return x
        as_cause = getattr(x, "as_instanceof_cause", None)  # ray.exceptions.RayTaskError
        if callable(as_cause):
            try:
                inst = as_cause()
            except Exception:  # noqa: BLE001 - best effort unwrapping only
                inst = None
            if inst is not x:
                stack.append(inst)
        stack.extend([x.__cause__, x.__context__, getattr(x, "cause", None)])
    return None


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


class RayExecutor:
    """``executor = "ray"``: :func:`generate` and :func:`mine` with their LLM calls on a Ray actor pool.

    Same signatures as :func:`gecko_distill.generation.generate` and :func:`gecko_distill.mining.mine`.
    """

    def __init__(self, config: PipelineConfig) -> None:
        _import_ray()  # fail early, with the install hint, before any stage starts
        self.config = config

    def runner(self) -> RayShardRunner:
        return RayShardRunner(self.config.llm, self.config.ray)

    def generate(self, *args: Any, **kwargs: Any) -> GenerationResult:
        from gecko_distill.generation import generate

        return generate(*args, shard_runner=self.runner(), **kwargs)

    def mine(self, *args: Any, **kwargs: Any) -> MiningResult:
        from gecko_distill.mining import mine

        return mine(*args, shard_runner=self.runner(), **kwargs)
