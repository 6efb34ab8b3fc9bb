"""Training throughput: the real pipeline (uint8 cache -> sampler -> batched augmentation -> step)
against the same model stepping on batches already in memory (pure compute), plus the cache build.

    python benchmarks/bench_train.py [--config configs/default.yaml] [--steps 30] [--threads 2]
    python benchmarks/bench_train.py --config configs/mobilenet_v2_96.yaml --skip-cache \
        --versus model_kwargs.frozen_blocks=4 [--versus model_kwargs.frozen_blocks=7 ...]

Prints a markdown table. Run it on an otherwise idle machine: both figures share the CPU.
Each ``--versus KEY=VALUE ...`` also times the recipe with those settings changed, alternating all
variants in the same run, and prints each one's speed ratio to the recipe (the shared CPU makes figures
from separate runs incomparable).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    ap.add_argument("--data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--labels", default=str(DATA / "label_train.txt"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-cache", action="store_true", help="do not time a cold cache build")
    ap.add_argument("--versus", nargs="+", action="append", default=[], metavar="KEY=VALUE",
                    help="settings of a variant timed beside the recipe (dotted keys, YAML values); repeatable")
    args = ap.parse_args()

    from clearface.cli import use_huge_pages
    use_huge_pages()  # as `clearface train` does (THP_MEM_ALLOC_ENABLE=0 in the environment to compare)
    import numpy as np
    import torch

    from clearface.settings import resolve
    from clearface.data import load_labelled
    from clearface.data.datamodule import FaceDataModule
    from clearface.train.module import HTERModule

    torch.set_num_threads(args.threads)
    rows = []
    if not args.skip_cache:
        tmp = tempfile.mkdtemp()
        t = time.perf_counter()
        load_labelled(args.data, args.labels, cache_dir=tmp)
        rows.append(("cache build (cold), 80k zip", f"{time.perf_counter() - t:.1f} s", f"{os.cpu_count()} cores"))
        t = time.perf_counter()
        load_labelled(args.data, args.labels, cache_dir=tmp)
        rows.append(("cache reuse (warm)", f"{time.perf_counter() - t:.1f} s", ""))
        shutil.rmtree(tmp)

    variants = [("recipe", {})] + [(" ".join(v), _overrides(v)) for v in args.versus]
    cfg = resolve(args.config, {"progress_bar": False})
    s, y = load_labelled(args.data, args.labels)
    n = min(len(y), args.steps * cfg["batch_size"] * 2)
    idx = np.arange(n)
    dm = FaceDataModule(s.images, y, idx, idx[:512], cfg["batch_size"], 512, cfg["imbalance"], 0)
    batches = [(dm.train[b][0], dm.train[b][1]) for b in list(iter(dm.train_dataloader().sampler))[: args.steps]]

    def timers(overrides: dict):
        vcfg = resolve(args.config, {"progress_bar": False, **overrides})
        module = HTERModule(vcfg, pos_weight=0.14)
        # Only the trainable parameters, as the training module's own optimizer takes them.
        opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
        module.train()

        def step(x, yb):
            loss = module.loss(module.model(x), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        # Pure compute: pre-normalised float batches already in memory, no sampling or augmentation.
        pre_x = [module._prepare(x, train=False).detach() for x, _ in batches]
        for x, (_, yb) in zip(pre_x[:3], batches):  # warm-up
            step(x, yb)

        def pure():
            for x, (_, yb) in zip(pre_x, batches):
                step(x, yb)

        def pipeline():
            for i, (xb, yb, _) in enumerate(dm.train_dataloader()):
                if i == args.steps:
                    break
                step(module._prepare(xb, train=True), yb)

        return {"pure": pure, "pipeline": pipeline}

    fns = [timers(o) for _, o in variants]
    results = [{} for _ in variants]
    for _ in range(2):  # alternated, best of two: less noise from other processes
        for kind in ("pure", "pipeline"):
            for fn, res in zip(fns, results):
                t = time.perf_counter()
                fn[kind]()
                ips = args.steps * cfg["batch_size"] / (time.perf_counter() - t)
                res[kind] = max(res.get(kind, 0), ips)
    for (name, _), res in zip(variants, results):
        label = f"{cfg['model']}, batch {cfg['batch_size']}" + ("" if name == "recipe" else f", {name}")
        rows.append((f"train step, pure compute ({label})", f"{res['pure']:.0f} img/s", ""))
        rows.append((f"train step, full pipeline (sampler + augmentation; {label})", f"{res['pipeline']:.0f} img/s",
                     f"{100 * res['pipeline'] / res['pure']:.1f} % of pure compute"))
    for (name, _), res in list(zip(variants, results))[1:]:
        rows.append((f"speed ratio, {name} / recipe", f"{res['pure'] / results[0]['pure']:.2f}x pure",
                     f"{res['pipeline'] / results[0]['pipeline']:.2f}x full pipeline"))
    print(f"| measurement ({args.threads} threads) | value | note |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


def _overrides(pairs: list[str]) -> dict:
    """``["a.b=4"]`` -> ``{"a": {"b": 4}}``, parsed as the CLI parses ``--a.b 4``."""
    from clearface.settings import parse_value, set_dotted

    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"bench_train.py: --versus takes KEY=VALUE, got {pair!r}")
        set_dotted(out, key, parse_value(value))
    return out


if __name__ == "__main__":
    sys.exit(main())
