"""Evaluation results in mteb's own result-cache layout, so that ``mteb.ResultCache(...).load_results`` reads them.

Layout (mteb's, written through :meth:`mteb.ResultCache.save_to_cache`)::

    EVAL_OUT/mteb/results/<model name>/<revision>/<Task>.json           the full dim, in the model's own format
    EVAL_OUT/mteb/results/<model name>/<revision>/model_meta.json
    EVAL_OUT/mteb/results/<model name>/<revision>/experiments/<kwargs>/  a smaller Matryoshka dim and/or another
                                                                        input format (mteb "experiments":
                                                                        ``truncate_dim``, ``input_format``)

``<model name>`` is the hub id for a hub name or a packaged alias (``sentence-transformers/all-MiniLM-L6-v2``)
and ``gecko-distill/<folder name>`` for a local folder; ``<revision>`` is the fingerprint of the weights, so two
folders of the same name never mix. Load them back with :func:`load_mteb_results`.

Official task names: a local set named after an mteb task (``--data STSBenchmark=PATH``) is evaluated with
mteb's task class for its kind on the local files and its results carry that name, so they sit beside the
leaderboard's files for the task; :func:`check_official_task` refuses a name whose mteb type differs from the
local set's kind. mteb's own loaders (which download from the Hugging Face hub) are not used: this project runs
offline, and its local sets (`../shared/benchdata`) are the data that is present. What is missing for a
drop-in ``mteb.get_task(name)`` run is the hub dataset in the local Hugging Face cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mteb import BenchmarkResults, TaskResult
    from mteb.models import ModelMeta

__all__ = ["MTEB_DIR", "MTEB_TYPES", "check_official_task", "load_mteb_results", "mteb_model_name", "save_mteb_result"]

#: The cache root under an evaluation output folder (mteb adds ``results/`` below it).
MTEB_DIR = "mteb"


def mteb_model_name(name: str) -> str:
    """The model name recorded for mteb: a hub id as is, a packaged alias by its hub id, a folder as
    ``gecko-distill/<folder name>``."""
    from gecko_distill.embedding.loader import PACKAGED_EMBEDDERS

    if Path(name).exists():
        return f"gecko-distill/{Path(name).resolve().name}"
    for key in PACKAGED_EMBEDDERS:
        if "/" in key and key.rsplit("/", 1)[1] == name:
            return key
    return name


#: Local set kinds → mteb task types.
MTEB_TYPES = {"retrieval": "Retrieval", "sts": "STS", "classification": "Classification",
              "pair_classification": "PairClassification", "clustering": "Clustering"}


def check_official_task(name: str, kind: str) -> bool:
    """``True`` when ``name`` is an official mteb task of the same type as a local set of ``kind``; ``False``
    for a name mteb does not know (a set's own name). Raises :class:`ConfigError` on a type mismatch."""
    import mteb

    from gecko_distill.errors import ConfigError

    try:
        task = mteb.get_task(name)
    except KeyError:
        return False
    if task.metadata.type != MTEB_TYPES.get(kind):
        raise ConfigError(f"{name!r} is mteb's {task.metadata.type} task, but the local set is {kind}: name the "
                          "set after a task of its own type, or give it a name mteb does not use")
    return True


def save_mteb_result(
    out_dir: str | Path,
    task_result: TaskResult,
    meta: ModelMeta,
    *,
    model: str,
    dim: int,
    full_dim: int,
    input_format: str,
    native_format: str,
    encode_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Save one task result of ``model`` at ``dim`` into ``out_dir/mteb`` (mteb's layout) and return its path.

    The full dim in the model's own input format is the plain result; a smaller dim or another format is an mteb
    experiment with ``experiment_kwargs`` ``{"truncate_dim": dim}`` / ``{"input_format": ...}``.
    """
    from mteb import ResultCache

    kwargs: dict[str, Any] = {}
    if dim < full_dim:
        kwargs["truncate_dim"] = dim
    if input_format != native_format:
        kwargs["input_format"] = input_format
    m = meta.model_copy(update={"name": mteb_model_name(model), "embed_dim": dim,
                                "experiment_kwargs": kwargs or None})
    cache = ResultCache(Path(out_dir) / MTEB_DIR)
    cache.save_to_cache(task_result, m, encode_kwargs=encode_kwargs)
    return cache.get_task_result_path(task_result.task_name, m)


def load_mteb_results(out_dir: str | Path, *, experiments: bool = True) -> BenchmarkResults:
    """Read an evaluation folder's results back through mteb's own API (``ResultCache.load_results``).

    Args:
        out_dir: the evaluation output folder (``EVAL_OUT``, holding ``mteb/results``).
        experiments: include the smaller dims / other formats (mteb's ``load_experiments="match_name"``);
            ``False`` keeps each model's plain full-dim result.
    """
    from mteb import ResultCache

    cache = ResultCache(Path(out_dir) / MTEB_DIR)
    return cache.load_results(include_remote=False, require_model_meta=True,
                              load_experiments="match_name" if experiments else "no_experiments")
