"""GeckoLoss vs MNRL, and CachedGeckoLoss at a 4x larger batch: examples/s and peak memory, side by side.

Every variant runs on the same model (the packaged all-MiniLM-L6-v2) and the same rows, in a fresh
subprocess, so one variant's allocator state cannot flatter or hurt the next. The rows are real news text
(the Lee corpus that pip installs with gensim): query = one sentence, positive = the next two sentences,
hard negative = a sentence of another article. The batch-B variants see the rows as 4*steps batches of B,
the 4B variants as steps batches of 4B: the same examples in total.

A step is forward + loss + backward (no optimizer: it costs the same for every variant).

Peak memory:
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensor memory).
- CPU (Linux): the process's peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs`` after the model
  is loaded, warmed up and its gradients freed) minus the RSS at that moment: the memory the steps add
  (parameter gradients, activations kept for backward, loss intermediates). The child runs with
  ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed tensors go back to the OS at once and RSS tracks live
  memory instead of glibc's cached heap.

Variants run one after another; with ``--repeats N`` the whole sequence runs N times (interleaved, so a
change in machine load hits every variant) and each variant keeps its best speed and its largest peak.

Usage::

    .venv/bin/python bench/loss.py                       # B=16, 2 steps at 4B, seq 128
    .venv/bin/python bench/loss.py --batch 32 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    # name: (loss, batch multiplier)
    "mnrl@B": ("mnrl", 1),
    "gecko@B": ("gecko", 1),
    "cached_gecko@4B": ("cached_gecko", 4),
    "gecko@4B": ("gecko", 4),
}


def build_rows(n: int) -> list[tuple[str, str, str]]:
    """``n`` (query, positive, negative) rows from the Lee corpus, deterministic."""
    from gecko_distill.corpus import iter_demo_corpus

    articles = [re.split(r"(?<=[.!?])\s+", p.text) for p in iter_demo_corpus("demo:gensim-lee")]
    rows: list[tuple[str, str, str]] = []
    for a_idx, sents in enumerate(articles):
        other = articles[(a_idx + 7) % len(articles)]
        for k in range(0, len(sents) - 2, 3):
            rows.append((
                "task: search result | query: " + sents[k],
                "title: none | text: " + " ".join(sents[k + 1:k + 3]),
                "title: none | text: " + other[k % len(other)],
            ))
            if len(rows) == n:
                return rows
    raise SystemExit(f"the Lee corpus gives only {len(rows)} rows; lower --batch or --steps")


def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def run_child(args: argparse.Namespace) -> None:
    """One variant in this (fresh) process; prints one JSON line."""
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from gecko_distill.embedding import load_embedder
    from gecko_distill.training import CachedGeckoLoss, GeckoLoss

    if args.threads:
        torch.set_num_threads(args.threads)
    loss_name, mult = VARIANTS[args.child]
    batch = args.batch * mult
    rows = build_rows(args.batch * 4 * args.steps)
    model = load_embedder("all-MiniLM-L6-v2", device=args.device, max_seq_length=args.seq_len)
    model.train()
    if loss_name == "mnrl":
        loss_fn = MultipleNegativesRankingLoss(model, scale=1 / args.temperature)
    elif loss_name == "gecko":
        loss_fn = GeckoLoss(model, temperature=args.temperature)
    else:
        loss_fn = CachedGeckoLoss(model, temperature=args.temperature, mini_batch_size=args.batch)

    def features(chunk: list[tuple[str, str, str]]) -> list[dict]:
        feats = [model.preprocess(list(col)) for col in zip(*chunk, strict=True)]
        return [{k: v.to(model.device) if hasattr(v, "to") else v for k, v in f.items()} for f in feats]

    batches = [features(rows[i:i + batch]) for i in range(0, len(rows), batch)]

    def step(feats: list[dict]) -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(feats, None).backward()

    cuda = model.device.type == "cuda"
    step(features(rows[:batch]))  # warm-up: lazy allocations, kernels
    model.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
        base = _rss_kib("VmRSS") * 1024
    start = time.perf_counter()
    for feats in batches:
        step(feats)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if cuda else _rss_kib("VmHWM") * 1024
    print(json.dumps({"variant": args.child, "batch": batch, "steps": len(batches), "examples": len(rows),
                      "seconds": elapsed, "examples_per_s": len(rows) / elapsed,
                      "peak_mib": (peak - base) / 2**20, "device": str(model.device)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16, help="B (the 4x variants use 4B, mini-batch B)")
    ap.add_argument("--steps", type=int, default=2, help="steps at 4B (the B variants run 4x as many)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    ap.add_argument("--repeats", type=int, default=1, help="run the sequence of variants N times")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    results: dict[str, dict] = {}
    for rep in range(args.repeats):
        for name in args.variants.split(","):
            cmd = [sys.executable, __file__, "--child", name, "--batch", str(args.batch), "--steps",
                   str(args.steps), "--seq-len", str(args.seq_len), "--temperature", str(args.temperature),
                   "--threads", str(args.threads)] + (["--device", args.device] if args.device else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"[{rep + 1}/{args.repeats}] {name:16s} batch {r['batch']:4d}  {r['examples_per_s']:8.2f} "
                  f"examples/s  peak +{r['peak_mib']:8.1f} MiB  ({r['steps']} steps, {r['seconds']:.1f} s, "
                  f"{r['device']})", flush=True)
            best = results.setdefault(name, r)
            best["examples_per_s"] = max(best["examples_per_s"], r["examples_per_s"])
            best["peak_mib"] = max(best["peak_mib"], r["peak_mib"])

    def ratio(a: str, b: str, key: str) -> str:
        return f"{results[a][key] / results[b][key]:.2f}" if a in results and b in results else "n/a"

    print("ratios:",
          f"speed gecko/mnrl={ratio('gecko@B', 'mnrl@B', 'examples_per_s')}",
          f"memory gecko/mnrl={ratio('gecko@B', 'mnrl@B', 'peak_mib')}",
          f"speed cached@4B/gecko@B={ratio('cached_gecko@4B', 'gecko@B', 'examples_per_s')}",
          f"memory cached@4B/gecko@B={ratio('cached_gecko@4B', 'gecko@B', 'peak_mib')}",
          f"memory cached@4B/gecko@4B={ratio('cached_gecko@4B', 'gecko@4B', 'peak_mib')}")


if __name__ == "__main__":
    main()
