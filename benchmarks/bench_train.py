"""Training throughput: the real pipeline (uint8 cache -> sampler -> batched augmentation -> step)
against the same model stepping on batches already in memory (pure compute), plus the cache build.

    python benchmarks/bench_train.py [--config configs/default.yaml] [--steps 30] [--threads 2]

Prints a markdown table. Run it on an otherwise idle machine: both figures share the CPU.
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

    cfg = resolve(args.config, {"progress_bar": False})
    s, y = load_labelled(args.data, args.labels)
    n = min(len(y), args.steps * cfg["batch_size"] * 2)
    idx = np.arange(n)
    dm = FaceDataModule(s.images, y, idx, idx[:512], cfg["batch_size"], 512, cfg["imbalance"], 0)
    module = HTERModule(cfg, pos_weight=0.14)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    module.train()

    def step(xb, yb, augment: bool):
        x = module._prepare(xb, train=augment)
        loss = module.loss(module.model(x), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # Pure compute: pre-normalised float batches already in memory, no sampling or augmentation.
    pre = [(dm.train[b][0], dm.train[b][1]) for b in list(iter(dm.train_dataloader().sampler))[: args.steps]]
    pre_x = [module._prepare(x, train=False).detach() for x, _ in pre]
    for x, yb in zip(pre_x[:3], pre):
        module.loss(module.model(x), yb[1]).backward()

    def pure():
        for x, (_, yb) in zip(pre_x, pre):
            loss = module.loss(module.model(x), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def pipeline():
        loader = dm.train_dataloader()
        for i, (xb, yb, _) in enumerate(loader):
            if i == args.steps:
                break
            step(xb, yb, augment=True)

    results = {}
    for name, fn in (("pure", pure), ("pipeline", pipeline), ("pure", pure), ("pipeline", pipeline)):
        t = time.perf_counter()
        fn()
        ips = args.steps * cfg["batch_size"] / (time.perf_counter() - t)
        results[name] = max(results.get(name, 0), ips)  # best of two: less noise from other processes
    rows.append((f"train step, pure compute ({cfg['model']}, batch {cfg['batch_size']})", f"{results['pure']:.0f} img/s", ""))
    rows.append(("train step, full pipeline (sampler + augmentation)", f"{results['pipeline']:.0f} img/s",
                 f"{100 * results['pipeline'] / results['pure']:.1f} % of pure compute"))
    print(f"| measurement ({args.threads} threads) | value | note |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    sys.exit(main())
