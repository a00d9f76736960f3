"""Bad input, end to end: broken corpus rows, LLM junk, config mistakes, a stage folder of another config.

Every case must end in a clear message (file:line and counts, the reject reason, the config key and its
allowed values) and never in a traceback; nothing of one config may leak into another config's rows.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from gecko_distill.artifacts import StageDir
from gecko_distill.cli import app
from gecko_distill.config import CorpusConfig, GenerationConfig, MiningConfig, PipelineConfig
from gecko_distill.corpus import read_corpus
from gecko_distill.errors import InputError, StageIncompleteError
from gecko_distill.generation import generate, load_task_queries
from gecko_distill.testing import ScriptedLLM
from gecko_distill.mining import mine

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def wiki() -> list:
    return read_corpus(CorpusConfig(path="demo:gensim-wiki", limit=40))[0]


def _row(pid: object, text: object, title: str = "") -> bytes:
    return json.dumps({"_id": pid, "title": title, "text": text}, ensure_ascii=False).encode("utf-8")


def bad_corpus(path: Path, good: list) -> dict[str, int]:
    """Write a JSONL corpus with every bad-row kind; return {reason: first line number}."""
    g = [_row(p.id, p.text, p.title) for p in good[:4]]
    lines: list[tuple[str | None, bytes]] = [
        (None, b"\xef\xbb\xbf" + g[0]),  # a byte-order mark on line 1: still a good row
        ("invalid_json", b'{"_id": "cut", "text": "a row cut in the mid'),
        ("missing_text", json.dumps({"_id": "no-text", "title": "only a title"}).encode()),
        ("empty_text", _row("blank", " \t \u00a0 ")),
        ("bad_encoding", b'{"_id": "latin1", "text": "caf\xe9 au lait, from a Latin-1 editor, long enough"}'),
        (None, g[1]),
        ("too_long", _row("huge", "endless " * 200_000)),                      # 1.6 MB on one line
        ("duplicate_id", _row(good[0].id, "a different text under an id that is already taken, long enough")),
        ("bad_type", _row("numeric", 12345)),
        (None, g[2]),
        # a JSON-escaped lone surrogate in the id: valid JSON, but no UTF-8 file could hold it later
        ("bad_encoding", b'{"_id": "\\ud800", "text": "a lone surrogate in the id, long enough to keep"}'),
        ("too_short", _row("short", "tiny")),
        ("duplicate_text", _row("copy", good[1].text, good[1].title)),
        ("invalid_json", b"[1, 2, 3]"),                                        # JSON, but not an object
        (None, g[3]),
    ]
    path.write_bytes(b"\n".join(b for _, b in lines) + b"\n")
    first: dict[str, int] = {}
    for lineno, (reason, _) in enumerate(lines, 1):
        if reason:
            first.setdefault(reason, lineno)
    return first


# ------------------------------------------------------------------------------ corpus, end to end
def test_bad_corpus_through_cli_generate(tmp_path: Path, wiki: list, gemma, monkeypatch) -> None:
    """`gecko-distill generate` on a corpus with every bad-row kind: the report names each kind with its
    count and first file:line, the good rows go through the real Gemma model, nothing crashes."""
    corpus = tmp_path / "bad.jsonl"
    first = bad_corpus(corpus, wiki)
    monkeypatch.setattr("gecko_distill.llm.load_llm", lambda cfg: gemma)  # the session's loaded Gemma
    out = tmp_path / "run" / "generation"
    r = runner.invoke(app, ["generate", "--corpus", str(corpus), "--out", str(out), "--num-passages", "1",
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    assert r.exception is None
    assert "kept 4 of 15 rows; skipped 11 bad rows" in r.output
    counts = {"invalid_json": 2, "bad_encoding": 2, "missing_text": 1, "empty_text": 1, "too_long": 1,
              "duplicate_id": 1, "bad_type": 1, "too_short": 1, "duplicate_text": 1}
    for reason, n in counts.items():
        assert f"{reason}: {n} first at {corpus}:{first[reason]}" in r.output, reason
    m = json.loads((out / "manifest.json").read_text())
    assert m["summary"]["rows_in"] == 1  # the stage ran on a surviving row
    ids = {q.passage_id for q in load_task_queries(out).queries}
    assert ids <= {p.id for p in wiki[:4]}


def test_unusable_corpus_through_real_cli_entry_point(tmp_path: Path) -> None:
    """`gecko-distill run` (the installed console script) on a corpus with no usable row, a truncated
    .gz and a corrupt Parquet file: exit code 2, the file and the counts named, no traceback."""
    cases = {}
    allbad = tmp_path / "allbad.jsonl"
    allbad.write_bytes(b'{"_id": 1, "text": ""}\n{oops\n\xff\xfe\n')
    cases[allbad] = ["no usable passages in", "3 rows read", "empty_text", "invalid_json", "bad_encoding"]
    trunc = tmp_path / "trunc.jsonl.gz"
    row = b'{"_id": "x", "text": "' + os.urandom(3000).hex().encode() + b'"}\n'  # incompressible
    trunc.write_bytes(gzip.compress(row * 3)[:2000])  # cut inside the first row
    cases[trunc] = ["no usable passages in", "truncated_file"]
    parquet = tmp_path / "corrupt.parquet"
    parquet.write_bytes(b"PAR1 this is not really parquet PAR1")
    cases[parquet] = ["not a readable Parquet file"]
    exe = Path(sys.executable).with_name("gecko-distill")
    for corpus, expected in cases.items():
        cfg = tmp_path / f"{corpus.stem}.toml"
        cfg.write_text(f'out_dir = "{tmp_path / "out"}"\n[corpus]\npath = "{corpus}"\n')
        p = subprocess.run([str(exe), "run", str(cfg), "--no-progress"], capture_output=True, text=True,
                           cwd=REPO, timeout=120, env={**os.environ, "COLUMNS": "250"})
        out = p.stdout + p.stderr
        assert p.returncode == 2, out
        assert "Traceback" not in out, out
        assert str(corpus) in out
        for s in expected:
            assert s in out, (s, out)


# -------------------------------------------------------------------------------- LLM output junk
JUNK: dict[str, tuple[str, str]] = {
    # passage-id suffix -> (completion, expected reject reason or "" for accepted)
    "empty": ("", "empty"),
    "blank": ("  \n\t \n", "empty"),
    "prose": ("I am sorry, I cannot help with that request.", "malformed"),
    "wrong-fields": (" question answering\nAnswer: the delta\nResult: rivers", "malformed"),
    "json": ('{"task": "find it", "query": "river delta"}', "malformed"),
    "query-first": ("Query: why is the river delta growing", "missing_task"),
    "empty-query": (" Given a question, find the answer.\nQuery:   ", "empty_query"),
    "endless-no-newline": ("blah " * 100_000, "malformed"),
    "endless-query": (" Given a question, find the answer.\nQuery: " + "why " * 5_000, "too_long"),
    "endless-task": (" Find " + "the passage " * 5_000 + "\nQuery: river delta", "too_long"),
    "control-bytes": ("\x00\x01\x02\ufffd\ufffd", "malformed"),
    "good-1": (" Given a question, retrieve passages that answer it.\nQuery: how do river deltas grow", ""),
    "good-2": (" Given a claim, find evidence.\nQuery: Sediment makes deltas grow.", ""),
    # the same query (up to case) again: whichever of the two comes later in the stage is the duplicate
    "good-2-again": (" Given a claim, find evidence.\nQuery: sediment makes deltas grow.", "duplicate_query"),
}


def _junk_corpus() -> list:
    from gecko_distill.records import Passage

    text = ("Sediment carried by the river settles where the current slows, and over decades the delta "
            "grows into the sea; farms upstream add to the load during spring floods.")
    return [Passage(id=f"p-{k}", title="Delta", text=f"{text} ({k})") for k in JUNK]


def _by_passage(prompt: str) -> str:
    key = prompt.split("(")[-1].split(")")[0]
    return JUNK[key][0]


def test_llm_junk_is_rejected_with_reasons(tmp_path: Path) -> None:
    """Empty, unparsable, wrong-field, endless and duplicate completions are rejected and counted; the
    rejects file keeps each raw completion with its reason; the good rows are kept."""
    passages = _junk_corpus()
    cfg = GenerationConfig(num_passages=len(passages), batch_size=4, max_passage_words=80)
    res = generate(passages, ScriptedLLM(_by_passage), cfg, out_dir=tmp_path / "gen", progress=False)
    expected = {f"p-{k}": reason for k, (_, reason) in JUNK.items()}
    shards = sorted((tmp_path / "gen" / "shards").glob("shard-*.jsonl"))
    order = [json.loads(line)["passage_id"] for f in shards for line in f.read_text().splitlines()]
    if order.index("p-good-2-again") < order.index("p-good-2"):  # first one wins
        expected["p-good-2"], expected["p-good-2-again"] = "duplicate_query", ""
    assert sorted(q.passage_id for q in res.queries) == sorted(p for p, r in expected.items() if not r)
    want = {}
    for r in expected.values():
        if r:
            want[r] = want.get(r, 0) + 1
    s = res.summary
    assert {k: v for k, v in s["rejects"].items() if v} == want
    assert s["rows_in"] == len(JUNK) and s["rows_out"] == 2
    rejects_file = tmp_path / "gen" / "generation.rejects.jsonl"
    rejects = [json.loads(x) for x in rejects_file.read_text().splitlines()]
    assert {r["passage_id"]: r["reject"] for r in rejects} == {p: r for p, r in expected.items() if r}
    assert all(r["raw"] == JUNK[r["passage_id"][2:]][0] for r in rejects)  # raw output kept for inspection
    manifest = json.loads((tmp_path / "gen" / "manifest.json").read_text())
    assert manifest["summary"]["rejects"] == s["rejects"]


def test_all_junk_fails_with_the_way_out(tmp_path: Path) -> None:
    passages = _junk_corpus()[:5]
    with pytest.raises(InputError, match=r"no usable queries .*generation\.rejects\.jsonl"):
        generate(passages, ScriptedLLM(_by_passage), GenerationConfig(num_passages=5), out_dir=tmp_path / "g",
                 progress=False)


# ---------------------------------------------------------------------------------- config errors
def _choices(section: str | None, key: str) -> list[str]:
    """The allowed values of a Literal config field, read from the config model itself (so the test
    follows the model when a choice is added)."""
    model = PipelineConfig if section is None else PipelineConfig.model_fields[section].annotation
    values = [f"'{v}'" for v in get_args(model.model_fields[key].annotation)]
    assert len(values) >= 2, (section, key)
    return values


@pytest.mark.parametrize(("toml", "expected"), [
    ('[mining]\nfuson = "rrf"\n',
     ["mining.fuson: unknown key (did you mean 'fusion'?)", "valid keys:", "rrf_k"]),
    ('[mining]\nfusion = "max"\n', ["mining.fusion", *_choices("mining", "fusion")]),
    ('[llm]\nbackend = "ollama"\n', ["llm.backend", *_choices("llm", "backend")]),
    ('[mining]\nnegative_policy = "first"\n', ["mining.negative_policy", "'last', 'random', 'rank:K'"]),
    ('[mining]\nindex = "annoy"\n', ["mining.index", *_choices("mining", "index")]),
    ('[generation]\nnum_passages = 0\n', ["generation.num_passages", "greater than or equal to 1"]),
    ('[mining]\nnum_neighbours = "ten"\n', ["mining.num_neighbours", "valid integer"]),
    ('executor = "spark"\n', ["executor", *_choices(None, "executor")]),
    ('[corpus]\nformat = "xml"\n', ["corpus.format", *_choices("corpus", "format")]),
    ("[mining\nfusion = 'rrf'\n", ["not valid TOML", "line 1"]),
])
def test_config_error_names_key_and_allowed_values(tmp_path: Path, toml: str, expected: list[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    r = runner.invoke(app, ["run", str(cfg)], env={"COLUMNS": "300"})
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)  # a clean exit, not an escaped exception
    assert "error:" in r.output and "Traceback" not in r.output
    for s in expected:
        assert s in r.output, (s, r.output)


def test_config_errors_from_command_line_options_and_missing_file(tmp_path: Path) -> None:
    r = runner.invoke(app, ["mine", "--corpus", "x.jsonl", "--queries", str(tmp_path),
                            "--out", str(tmp_path / "o"), "--fusion", "max"], env={"COLUMNS": "300"})
    assert r.exit_code == 2 and "mining.fusion" in r.output
    assert all(c in r.output for c in _choices("mining", "fusion")), r.output
    r = runner.invoke(app, ["run", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "config file not found" in r.output


# ------------------------------------------------------------ a stage folder of another config
class _FailAfter:
    """A scripted LLM that dies after ``n`` calls: leaves a half-done stage behind, as a crash would."""

    def __init__(self, inner: ScriptedLLM, n: int) -> None:
        self.inner, self.n = inner, n

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def generate(self, prompts, **kw):
        self.n -= 1
        if self.n < 0:
            raise RuntimeError("simulated crash")
        return self.inner.generate(prompts, **kw)


def _completion(prompt: str) -> str:
    words = prompt.split("Passage:")[-1].split()
    return f" Given a question, retrieve passages that answer it.\nQuery: {' '.join(words[3:9]).lower()}"


def _fresh(tmp_path: Path, name: str, passages: list, cfg: GenerationConfig) -> bytes:
    generate(passages, ScriptedLLM(_completion), cfg, out_dir=tmp_path / name, progress=False)
    return (tmp_path / name / "generation.jsonl").read_bytes()


@pytest.mark.parametrize("change", ["config", "corpus", "llm"])
def test_stage_dir_of_another_config_is_recomputed_not_mixed(tmp_path: Path, wiki: list, change: str) -> None:
    """A stage folder finished (or half done) under config A, rerun under B: B's rows only, exactly as in
    a fresh folder, for a changed config, an edited corpus and a different LLM."""
    a_cfg = GenerationConfig(num_passages=12, batch_size=3, seed=0)
    b_cfg, b_passages, b_llm = a_cfg, list(wiki), ScriptedLLM(_completion)
    if change == "config":
        b_cfg = a_cfg.model_copy(update={"seed": 1})
    elif change == "corpus":
        p = b_passages[5]
        b_passages[5] = p.__class__(p.id, p.title, p.text + " Edited.")
    else:
        b_llm = ScriptedLLM(lambda p: _completion(p).replace("retrieve", "find"))
    expected = tmp_path / "fresh"
    generate(b_passages, b_llm, b_cfg, out_dir=expected, progress=False)

    for state in ("finished", "half-done"):
        d = tmp_path / state
        llm = ScriptedLLM(_completion)
        if state == "half-done":
            with pytest.raises(RuntimeError, match="simulated crash"):
                generate(wiki, _FailAfter(llm, 2), a_cfg, out_dir=d, progress=False)
            assert len(list((d / "shards").glob("shard-*.jsonl"))) == 2
            with pytest.raises(StageIncompleteError, match="rerun the same command to resume"):
                load_task_queries(d)
        else:
            generate(wiki, llm, a_cfg, out_dir=d, progress=False)
        generate(b_passages, b_llm, b_cfg, out_dir=d, progress=False)
        for name in ("generation.jsonl", "generation.rejects.jsonl", "config.json"):
            assert (d / name).read_bytes() == (expected / name).read_bytes(), (state, name)
        fps = [StageDir(x, "generation").manifest()["fingerprint"] for x in (d, expected)]
        assert fps[0] == fps[1]


def test_shards_without_a_fingerprint_marker_are_not_trusted(tmp_path: Path, wiki: list) -> None:
    """Shards copied into a folder without their marker cannot be attributed to a config: dropped."""
    cfg = GenerationConfig(num_passages=6, batch_size=3)
    expected = _fresh(tmp_path, "fresh", wiki, cfg)
    d = tmp_path / "copied"
    (d / "shards").mkdir(parents=True)
    (d / "shards" / "shard-00000.jsonl").write_text(
        json.dumps({"passage_id": "alien", "task_type": "x", "raw": "", "task": "t", "query": "q",
                    "reject": None}) + "\n")
    assert _fresh(tmp_path, "copied", wiki, cfg) == expected


def test_mining_dir_of_another_config_is_recomputed(tmp_path: Path, wiki: list, minilm) -> None:
    """A finished FRet folder rerun with another hard-negative policy: recomputed, the manifest matches."""
    gen = generate(wiki, ScriptedLLM(_completion), GenerationConfig(num_passages=4, batch_size=2),
                   out_dir=tmp_path / "gen", progress=False)
    llm = ScriptedLLM(_completion)
    runs: dict[str, Callable[[Path], list]] = {}
    for policy in ("last", "rank:2"):
        cfg = MiningConfig(num_neighbours=4, negative_policy=policy, batch_size=2, fusion="rrf")
        runs[policy] = lambda d, cfg=cfg: mine(gen.queries, wiki, embedder=minilm, llm=llm, config=cfg,
                                               out_dir=d, progress=False).rows
    shared = tmp_path / "fret"
    runs["last"](shared)
    rows_b = runs["rank:2"](shared)
    assert rows_b == runs["rank:2"](tmp_path / "fresh")
    assert all(r["ranks"]["negative_fused"] == 2 for r in rows_b)
    assert json.loads((shared / "manifest.json").read_text())["summary"]["negative_policy"] == "rank:2"
