"""Crash safety: SIGKILL every stage at random points, resume, and get exactly the uninterrupted result.

Each trial starts a stage in a subprocess (``_kill_worker.py``), kills it with SIGKILL after a delay drawn
from a seeded RNG (or right after a chosen event, e.g. "all shards are written" to land in the final
merge), checks what the dead process left behind, reruns the same command to completion and compares
the stage directory with an uninterrupted run's, file by file and byte for byte.

What a kill may leave behind (checked after every kill): shard files that are complete and identical to
the reference run's shards, half-written temp files (never named ``shard-*.jsonl``, so never read), no
manifest or a manifest that really marks a finished stage, and an SQLite cache that opens, passes
``PRAGMA integrity_check`` and holds only whole batches of correct answers.

Most trials use a scripted LLM with a per-call sleep (deterministic, so "equal to an uninterrupted run"
is checkable byte for byte, and slow enough that kills land mid-stage) and a feature-hashing embedder:
the property under test is the write protocol, not the models. Two trials mine with the real MiniLM and
one generates with the real Gemma-3-270M GGUF through llama.cpp.

Kills (delays from a seeded RNG, ``SEED``): generation 8, mining 8, mining + MiniLM 2, whole pipeline
4, LLM cache 6, generation + Gemma 1 = 29 kills in 21 trials (some trials kill the resumed run again).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

import _kill_worker as kw
from gecko_distill.artifacts import read_jsonl

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_kill_worker.py")
SEED = 7_2024
KILLED = -signal.SIGKILL

# Stage sizes: 24 seed passages in shards of 3 (8 generation shards); mining in shards of 2 candidate passages.
GEN = {"num_passages": 24, "gen_batch": 3}
MINE = {"neighbours": 5, "mine_batch": 2}
CALL_SLEEP = 0.06  # per scripted LLM call
IO_DELAY = 0.04  # per half-write and per rename, in trials that widen the write windows


# ----------------------------------------------------------------------------------------- helpers
def _spawn(spec: dict[str, Any], log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(WORKER), json.dumps(spec)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=log.open("a"))


def run_to_end(spec: dict[str, Any], log: Path) -> str:
    proc = _spawn(spec, log)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "DONE" in out, \
        f"worker failed ({proc.returncode}):\n{log.read_text()[-3000:]}"
    return out


def run_and_kill(spec: dict[str, Any], log: Path, delay: float,
                 after: Callable[[], bool] | None = None) -> None:
    """Start the worker; once it is READY (and ``after()`` holds, if given), wait ``delay`` s, SIGKILL it."""
    proc = _spawn(spec, log)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "READY", f"worker died before starting:\n{log.read_text()[-3000:]}"
    if after is not None:
        while not after() and proc.poll() is None:
            time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()
    # Every trial must really interrupt the stage: the delays are drawn below its minimum duration.
    assert proc.returncode == KILLED, f"the stage ended before the kill (rc={proc.returncode}): trial void"


def snapshot(d: Path) -> dict[str, Any]:
    """Every file under ``d`` (bytes), except the LLM cache and the run-timing fields of manifests."""
    snap: dict[str, Any] = {}
    for p in sorted(d.rglob("*")):
        rel = p.relative_to(d).as_posix()
        if p.is_dir() or "llm-cache.sqlite" in p.name or p.name in ("run.json", "pipeline.json"):
            continue
        if p.name == "manifest.json":
            m = json.loads(p.read_text())
            m.pop("finished_at"), m.pop("elapsed_s")
            snap[rel] = m
        else:
            snap[rel] = p.read_bytes()
    return snap


def stage_dirs(d: Path) -> list[Path]:
    return [p.parent for p in sorted(d.rglob(".fingerprint"))]


def check_leftovers(out: Path, ref: dict[str, Any], stats: dict[str, int]) -> None:
    """What a killed run left: complete, reference-identical shards; temp files are never shard names."""
    for st in stage_dirs(out):
        for shard in sorted((st / "shards").glob("shard-*.jsonl")):
            rel = shard.relative_to(out).as_posix()
            assert shard.read_bytes() == ref[rel], f"{rel} is visible but not the complete shard"
            read_jsonl(shard)  # parses to the end
            stats["shards_kept"] += 1
        temps = list(st.rglob("*.tmp"))
        stats["half_written_temp_files"] += len(temps)
        assert all(not t.name.startswith("shard-") for t in temps)
        if (st / "manifest.json").exists():  # killed after the manifest: the stage is really finished
            stats["killed_after_manifest"] += 1
            m = json.loads((st / "manifest.json").read_text())
            for name in m["files"]:
                rel = (st / name).relative_to(out).as_posix()
                assert (st / name).read_bytes() == ref[rel], f"{rel} listed in the manifest is incomplete"
    for db in out.rglob("llm-cache.sqlite"):
        check_sqlite(db)


def check_sqlite(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:  # killed between opening the file and creating the table: nothing stored yet
            return 0
        rows = con.execute("SELECT v FROM kv").fetchall()
    finally:
        con.close()
    for (v,) in rows:
        json.loads(v)  # every stored answer is whole
    return len(rows)


def assert_same_as_reference(out: Path, ref: dict[str, Any]) -> None:
    got = snapshot(out)
    assert sorted(got) == sorted(ref), f"extra files {set(got) - set(ref)}, missing {set(ref) - set(got)}"
    for rel in ref:
        assert got[rel] == ref[rel], f"{rel} differs from the uninterrupted run"
    for st in stage_dirs(out):
        m = json.loads((st / "manifest.json").read_text())
        rows = read_jsonl(st / m["files"][0])
        if m["stage"] == "generation":
            keys = [r["passage_id"] for r in rows]
            keys += [r["passage_id"] for r in read_jsonl(st / "generation.rejects.jsonl")]
        elif m["stage"] == "scores":  # one row per (query, candidate) pair
            keys = [(r["query_index"], r["rank_retriever"]) for r in rows]
        else:
            keys = [(r["seed_id"], r["task"], r["query"]) for r in rows]
        assert len(keys) == len(set(keys)), f"{st}: a row is duplicated"
        assert len(rows) == m["rows"], f"{st}: a row is lost"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 real paragraphs of the English Wikipedia sample that the gensim wheel ships, as JSONL."""
    from gecko_distill.config import CorpusConfig
    from gecko_distill.corpus import read_corpus

    passages, _ = read_corpus(CorpusConfig(path="demo:gensim-wiki", limit=200))
    path = tmp_path_factory.mktemp("corpus") / "wiki200.jsonl"
    rows = ({"_id": p.id, "title": p.title, "text": p.text} for p in passages)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kill")


@pytest.fixture(scope="module")
def stats() -> dict[str, int]:
    """Counts over all trials, printed at the end (see docs/robustness.md)."""
    s = {"kills": 0, "shards_kept": 0, "half_written_temp_files": 0, "killed_after_manifest": 0}
    yield s
    print(f"\nkill-test totals: {s}")


@pytest.fixture(scope="module")
def gen_reference(corpus: Path, work: Path) -> tuple[Path, dict[str, Any]]:
    out = work / "gen-ref"
    run_to_end({"mode": "generate", "out": str(out), "corpus": str(corpus), "call_sleep": 0, **GEN},
               work / "gen-ref.log")
    return out, snapshot(out)


Kill = tuple[float, Callable[[], bool] | None]  # (delay after READY / after the event, event)


def _trial(spec: dict[str, Any], ref: dict[str, Any], out: Path, log: Path, stats: dict[str, int],
           *kills: Kill | Callable[[], Kill]) -> None:
    """Kill the stage once per entry of ``kills`` (each run resumes the previous one's work), check the
    leftovers after each kill, then resume to completion and compare with the reference."""
    spec = {**spec, "out": str(out)}
    for k in kills:
        delay, after = k() if callable(k) else k
        run_and_kill(spec, log, delay, after)
        stats["kills"] += 1
        check_leftovers(out, ref, stats)
    run_to_end({**spec, "io_delay": 0}, log)  # resume: the same command, run to completion
    assert_same_as_reference(out, ref)


def _n_shards(stage: Path) -> int:
    return len(list((stage / "shards").glob("shard-*.jsonl")))


def _shards_done(stage: Path, n: int) -> Callable[[], bool]:
    return lambda: _n_shards(stage) >= n


def _mid_write(stage: Path) -> Callable[[], bool]:
    """True while a shard is half written (its temp file exists, not yet renamed)."""
    return lambda: any((stage / "shards").glob(".shard-*.tmp"))


def _kill_series(spec: dict[str, Any], ref: dict[str, Any], work: Path, name: str, stats: dict[str, int],
                 rng: random.Random, n_shards: int, shard_time: float, shards_in: str = ".") -> None:
    """The 8 kills of one stage; ``shard_time`` is the least time one shard takes (its LLM sleeps);
    ``shards_in`` is the sub-folder of the stage whose shards are written (mining: the scores table).

    - 3 trials x 2 kills at random points: the first in the first half of the shard loop, the second at a
      random point of the resumed run's remaining shards (a resume can be killed too);
    - 1 kill while a shard's temp file is half written;
    - 1 kill after the last shard, while the merged files and the manifest are being written.
    The delays are drawn below the stage's minimum duration, so every kill lands inside the stage.
    """
    for t in range(3):
        io = IO_DELAY if t == 1 else 0.0
        per_shard = shard_time + 2 * io
        out = work / f"{name}-{t}"
        trial = {**spec, "io_delay": io}

        def second(out: Path = out, per_shard: float = per_shard) -> Kill:
            # One unwritten shard may already be answered in the LLM cache (no sleep on resume).
            return rng.uniform(0, max(n_shards - _n_shards(out / shards_in) - 1, 0) * per_shard), None

        _trial(trial, ref, out, work / f"{name}-{t}.log", stats,
               (rng.uniform(0, n_shards * per_shard / 2), None), second)
    before = stats["half_written_temp_files"]
    out = work / f"{name}-mid-write"
    _trial({**spec, "io_delay": IO_DELAY}, ref, out, work / f"{name}-mid-write.log", stats,
           (0.0, _mid_write(out / shards_in)))
    assert stats["half_written_temp_files"] > before
    out = work / f"{name}-merge"
    # The merge does >= 5 atomic writes (2 delays each) plus the Parquet rename after the last shard.
    _trial({**spec, "io_delay": IO_DELAY}, ref, out, work / f"{name}-merge.log", stats,
           (rng.uniform(0, 8 * IO_DELAY), _shards_done(out / shards_in, n_shards)))


# ------------------------------------------------------------------------------------------ trials
def test_kill_generation(corpus: Path, work: Path, gen_reference, stats) -> None:
    """8 kills of the generation stage (one scripted LLM call per shard)."""
    _, ref = gen_reference
    spec = {"mode": "generate", "corpus": str(corpus), "call_sleep": CALL_SLEEP, **GEN}
    _kill_series(spec, ref, work, "gen", stats, random.Random(f"{SEED}:generation"),
                 n_shards=sum(1 for k in ref if k.startswith("shards/")), shard_time=CALL_SLEEP)


@pytest.fixture(scope="module")
def mine_reference(corpus: Path, work: Path, gen_reference) -> tuple[dict[str, Any], dict[str, Any]]:
    gen_dir, _ = gen_reference
    spec = {"mode": "mine", "corpus": str(corpus), "gen_dir": str(gen_dir), "call_sleep": 0, **MINE}
    out = work / "mine-ref"
    run_to_end({**spec, "out": str(out)}, work / "mine-ref.log")
    return spec, snapshot(out)


def test_kill_mining(work: Path, mine_reference, stats) -> None:
    """8 kills of the mining stage with the hash embedder, while the scores table is written (one scripted
    LLM call per shard of candidate passages, QL and RC together)."""
    spec, ref = mine_reference
    _kill_series({**spec, "call_sleep": CALL_SLEEP / 2}, ref, work, "mine", stats,
                 random.Random(f"{SEED}:mining"), n_shards=sum(1 for k in ref if k.startswith("scores/shards/")),
                 shard_time=CALL_SLEEP / 2, shards_in="scores")


def test_kill_mining_real_minilm(work: Path, mine_reference, stats) -> None:
    """2 kills while mining with the real all-MiniLM-L6-v2: the first while the corpus is being encoded,
    the second (of the resumed run) while candidates are scored; the result equals an uninterrupted
    MiniLM run's."""
    spec, _ = mine_reference
    spec = {**spec, "embedder": "minilm"}
    ref_out = work / "minilm-ref"
    run_to_end({**spec, "out": str(ref_out)}, work / "minilm-ref.log")
    ref = snapshot(ref_out)
    rng = random.Random(f"{SEED}:minilm")
    n_shards = sum(1 for k in ref if k.startswith("scores/shards/"))
    out = work / "minilm-0"
    # Encoding 200 passages takes well over 0.3 s on any CPU; the second kill lands after the first shard.
    _trial({**spec, "call_sleep": CALL_SLEEP / 2}, ref, out, work / "minilm-0.log", stats,
           (rng.uniform(0, 0.3), None),
           (rng.uniform(0, (n_shards - 2) * CALL_SLEEP / 2), _shards_done(out / "scores", 1)))


def test_kill_whole_pipeline(corpus: Path, work: Path, stats) -> None:
    """4 kills of `run_pipeline` (corpus → generation → mining, shared LLM cache) at random points."""
    base = {"mode": "pipeline", "corpus": str(corpus), **GEN, **MINE}
    ref_out = work / "pipe-ref"
    run_to_end({**base, "out": str(ref_out), "call_sleep": 0}, work / "pipe-ref.log")
    ref = snapshot(ref_out)
    n_calls = (sum(1 for k in ref if k.startswith("generation/shards/"))
               + sum(1 for k in ref if k.startswith("fret/scores/shards/")))
    rng = random.Random(f"{SEED}:pipeline")
    for t in range(4):
        _trial({**base, "call_sleep": CALL_SLEEP / 2, "io_delay": IO_DELAY if t % 2 else 0.0}, ref,
               work / f"pipe-{t}", work / f"pipe-{t}.log", stats,
               (rng.uniform(0, n_calls * CALL_SLEEP / 2), None))


def test_kill_llm_cache_writes(work: Path, stats) -> None:
    """6 kills while CachedLLM stores large answers: the SQLite file stays readable, holds only whole
    batches of correct answers, and the resumed run asks the backend only for what is missing."""
    from gecko_distill.llm.cache import _key

    n, batch, sleep = 60, 6, 0.03
    llm = kw.SlowScriptedLLM(0)
    fp = llm.fingerprint
    expected = {_key(fp, "gen", "cache-prefix", p, asdict(kw.GenerationParams())): kw.scripted_completion(p)
                for p in kw.cache_prompts(n)}
    for r, res in zip(kw.cache_requests(n), llm.loglik(kw.cache_requests(n)), strict=True):
        expected[_key(fp, "loglik", "cache-prefix", r.context, r.continuation)] = [res.logprob, res.num_tokens]
    rng = random.Random(f"{SEED}:cache")
    for t in range(6):
        out = work / f"cache-{t}"
        spec = {"mode": "cache", "out": str(out), "cache_items": n, "cache_batch": batch, "call_sleep": sleep}
        run_and_kill(spec, work / f"cache-{t}.log", rng.uniform(0, 2 * (n // batch) * sleep))
        stats["kills"] += 1
        db = out / "llm-cache.sqlite"  # created (empty) before the worker says READY
        kept = check_sqlite(db)
        assert kept % batch == 0, f"{kept} entries: a batch was committed in part"
        con = sqlite3.connect(db)
        for k, v in con.execute("SELECT k, v FROM kv"):
            assert json.loads(v) == expected[k]  # every stored entry is a whole, correct answer
        con.close()
        stats_line = next(line for line in run_to_end(spec, work / f"cache-{t}.log").splitlines()
                          if line.startswith("STATS"))
        s = json.loads(stats_line.split(" ", 1)[1])
        assert s["hits"] == kept and s["misses"] == 2 * n - kept  # nothing answered twice
        assert check_sqlite(db) == 2 * n


def test_kill_generation_real_gemma(corpus: Path, work: Path, stats) -> None:
    """1 kill of generation with the real Gemma-3-270M GGUF (llama.cpp), right after its first shard."""
    pytest.importorskip("llama_cpp")
    spec = {"mode": "generate", "corpus": str(corpus), "llm": "gemma", "num_passages": 2, "gen_batch": 1,
            "max_new_tokens": 32}
    ref_out = work / "gemma-ref"
    run_to_end({**spec, "out": str(ref_out)}, work / "gemma-ref.log")
    ref = snapshot(ref_out)
    out = work / "gemma-0"
    _trial(spec, ref, out, work / "gemma-0.log", stats,
           (random.Random(f"{SEED}:gemma").uniform(0, 0.2), _shards_done(out, 1)))
