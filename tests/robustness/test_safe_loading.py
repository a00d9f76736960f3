"""Safe loading: weights come from safetensors or GGUF; model-shipped code runs only when the user says so.

The fixtures are copies of the packaged all-MiniLM-L6-v2 altered the way a hostile or careless model
repo would be: one whose config asks for its own Python code (``auto_map`` + an unknown ``model_type``),
one with pickle-only weights (``pytorch_model.bin``), one whose pickle carries a code payload. Each
payload, if it ever ran, would create a marker file; the tests assert that it does not.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gecko_distill.cli import app
from gecko_distill.config import EmbedderConfig, LLMConfig, PipelineConfig
from gecko_distill.embedding import load_embedder, resolve_embedder_path
from gecko_distill.errors import BackendUnavailable

runner = CliRunner()
SENTENCES = ["title: Delta | text: Sediment settles where the river slows.",
             "task: search | query: river delta"]


def _copy_minilm(dst: Path, *, weights: bool = True) -> Path:
    """The packaged MiniLM folder, with the (large) safetensors file linked rather than copied."""
    src = Path(resolve_embedder_path("all-MiniLM-L6-v2"))
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    if weights:
        (dst / "model.safetensors").symlink_to(src / "model.safetensors")
    return dst


@pytest.fixture
def remote_code_model(tmp_path: Path) -> tuple[Path, Path]:
    """A model folder that needs its own code (an architecture transformers does not know)."""
    folder = _copy_minilm(tmp_path / "needs-code")
    marker = tmp_path / "MODEL_CODE_RAN"
    (folder / "modeling_custom.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).touch()  # what hostile code could do instead: anything\n"
        "from transformers import BertConfig, BertModel\n\n"
        "class CustomConfig(BertConfig):\n    model_type = 'gecko_custom_arch'\n\n"
        "class CustomModel(BertModel):\n    config_class = CustomConfig\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type="gecko_custom_arch",
               auto_map={"AutoConfig": "modeling_custom.CustomConfig",
                         "AutoModel": "modeling_custom.CustomModel"})
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    return folder, marker


@pytest.fixture(scope="module")
def pickle_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(pickle-only model, pickle model with a code payload, the payload's marker file)."""
    import torch
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("pickles")
    plain = _copy_minilm(root / "pickle-only", weights=False)
    state = load_file(Path(resolve_embedder_path("all-MiniLM-L6-v2")) / "model.safetensors")
    torch.save(state, plain / "pytorch_model.bin")
    marker = root / "PICKLE_PAYLOAD_RAN"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # unpickling would create the marker file

    hostile = _copy_minilm(root / "pickle-payload", weights=False)
    torch.save({**state, "extra": Payload()}, hostile / "pytorch_model.bin")
    return plain, hostile, marker


# --------------------------------------------------------------------------------- trust_remote_code
def test_trust_remote_code_is_off_by_default() -> None:
    assert LLMConfig().trust_remote_code is False
    assert EmbedderConfig().trust_remote_code is False
    cfg = PipelineConfig()
    assert cfg.llm.trust_remote_code is False and cfg.embedder.trust_remote_code is False
    assert inspect.signature(load_embedder).parameters["trust_remote_code"].default is False


def test_model_code_does_not_run_unless_allowed(remote_code_model: tuple[Path, Path]) -> None:
    folder, marker = remote_code_model
    with pytest.raises(BackendUnavailable, match=r"embedder\.trust_remote_code = true") as e:
        load_embedder(str(folder))
    assert "Traceback" not in str(e.value)
    assert not marker.exists(), "the model's own code ran although trust_remote_code is off"
    # The same folder loads once the user turns it on: the flag, and only the flag, decides.
    model = load_embedder(str(folder), trust_remote_code=True)
    assert marker.exists()
    assert model.encode(SENTENCES).shape == (2, 384)


def test_pipeline_passes_trust_remote_code_through(tmp_path: Path, remote_code_model: tuple[Path, Path],
                                                   monkeypatch) -> None:
    """`gecko-distill run` with that folder as the seed embedder: refused with the config key to set (no
    traceback, code not run); with `trust_remote_code = true` in [embedder] it runs."""
    from gecko_distill.testing import ScriptedLLM

    folder, marker = remote_code_model
    monkeypatch.setattr("gecko_distill.pipeline.load_llm", lambda cfg: ScriptedLLM(
        lambda p: " Given a question, find the passage.\nQuery: " + " ".join(p.split()[-12:-6]).lower()))
    base = (f'out_dir = "{tmp_path / "run"}"\n[corpus]\npath = "demo:gensim-wiki"\nlimit = 20\n'
            '[generation]\nnum_passages = 3\n[mining]\nnum_neighbours = 3\n'
            f'[embedder]\nmodel = "{folder}"\n')
    cfg = tmp_path / "run.toml"
    cfg.write_text(base)
    r = runner.invoke(app, ["run", str(cfg), "--no-progress"], env={"COLUMNS": "300"})
    assert r.exit_code == 2, r.output
    assert "embedder.trust_remote_code = true" in r.output and "Traceback" not in r.output
    assert not marker.exists()
    cfg.write_text(base + "trust_remote_code = true\n")
    r = runner.invoke(app, ["run", str(cfg), "--no-progress"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    assert marker.exists()


def test_transformers_llm_backend_does_not_run_model_code(remote_code_model: tuple[Path, Path]) -> None:
    """The transformers LLM backend: a folder that needs its own code is not loaded (and its code not run)
    with the default config."""
    from gecko_distill.errors import GeckoDistillError
    from gecko_distill.llm import load_llm

    folder, marker = remote_code_model
    with pytest.raises(GeckoDistillError):
        load_llm(LLMConfig(backend="transformers", model=str(folder), device="cpu"))
    assert not marker.exists(), "the model's own code ran although llm.trust_remote_code is off"


# ------------------------------------------------------------------------------------ pickle weights
def test_pickle_only_model_warns_and_loads_tensors_only(pickle_models, caplog) -> None:
    plain, _, _ = pickle_models
    with caplog.at_level(logging.WARNING, logger="gecko_distill.embedding.loader"):
        model = load_embedder(str(plain))
    assert any("pickle weights only" in r.getMessage() and "pytorch_model.bin" in r.getMessage()
               and "safetensors" in r.getMessage() for r in caplog.records)
    reference = load_embedder("all-MiniLM-L6-v2")
    np.testing.assert_allclose(model.encode(SENTENCES), reference.encode(SENTENCES), atol=1e-5)


def test_pickle_with_a_code_payload_is_refused(pickle_models) -> None:
    _, hostile, marker = pickle_models
    with pytest.raises(BackendUnavailable, match=r"refused to load embedder .*safetensors"):
        load_embedder(str(hostile))
    assert not marker.exists(), "unpickling the weights ran code"


def test_llm_weights_come_from_gguf(pickle_models) -> None:
    """The packaged LLM is a GGUF file; a pickle given as the LLM is not unpickled, just refused."""
    pytest.importorskip("llama_cpp")
    from gecko_distill.llm import load_llm
    from gecko_distill.llm.packaged import resolve_packaged_llm

    assert resolve_packaged_llm("gemma3-270m").suffix == ".gguf"
    _, hostile, marker = pickle_models
    with pytest.raises(BackendUnavailable, match="valid GGUF"):
        load_llm(LLMConfig(backend="llamacpp", model=str(hostile / "pytorch_model.bin")))
    assert not marker.exists()
