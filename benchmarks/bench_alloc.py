"""Huge pages for torch's CPU tensors: the same training and scoring steps with THP_MEM_ALLOC_ENABLE=0 and =1.

The CLI sets ``THP_MEM_ALLOC_ENABLE=1`` (``clearface.cli.use_huge_pages``). Without it, torch maps every tensor
above the allocator's threshold afresh and the kernel faults it in 4 KB pages: on this 2-core VM half
of the CPU time of a 96 px MobileNetV2 went to the kernel (``sys``), not to the model.

    python benchmarks/bench_alloc.py [--seconds 20] [--rounds 2] [--model mobilenet_v2] [--input-size 96]

Each cell runs in its own process (the setting is read when torch allocates), the two settings
alternate, and the table gives the medians and the ratio: a noisy shared CPU moves both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import torch
from clearface.models import get_model
what, bs, seconds, model, size, threads = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
torch.manual_seed(0)
net = get_model(model, pretrained=False, input_size=size).to(memory_format=torch.channels_last)
x = torch.rand(bs, 3, 64, 64).contiguous(memory_format=torch.channels_last)
y = (torch.rand(bs) > 0.5).float()
opt = torch.optim.AdamW(net.parameters(), 1e-3)
def step():
    if what == "score":
        net.eval()
        with torch.inference_mode():
            net(x)
    else:
        net.train(); opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward(); opt.step()
for _ in range(2):
    step()
r0, t0, n = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
while time.perf_counter() - t0 < seconds:
    step(); n += bs
r1, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
print(json.dumps({"images_per_s": n / t, "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime,
                  "faults_per_image": (r1.ru_minflt - r0.ru_minflt) / n}))
"""


def cell(what: str, bs: int, thp: str, args) -> dict:
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE=thp, PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, "-c", CHILD, what, str(bs), str(args.seconds), args.model,
                          str(args.input_size), str(args.threads)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="timed seconds per cell")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two settings")
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--score-batch", type=int, default=512)
    args = ap.parse_args()
    thp_mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mode = thp_mode.read_text().strip() if thp_mode.exists() else "(no THP on this system)"
    print(f"{args.model} at {args.input_size} px, {args.threads} threads, {args.seconds:.0f} s per cell, "
          f"{args.rounds} rounds; transparent huge pages: {mode}\n")
    print("| step | batch | THP_MEM_ALLOC_ENABLE | images/s (median) | kernel share of CPU | page faults per image "
          "| speed-up |")
    print("|---|---|---|---|---|---|---|")
    for what, bs in (("train", args.train_batch), ("score", args.score_batch)):
        runs = {"0": [], "1": []}
        for _ in range(args.rounds):
            for thp in ("0", "1"):
                runs[thp].append(cell(what, bs, thp, args))
        base = statistics.median(r["images_per_s"] for r in runs["0"])
        for thp in ("0", "1"):
            rs = runs[thp]
            speed = statistics.median(r["images_per_s"] for r in rs)
            kernel = statistics.median(r["sys_s"] / max(r["sys_s"] + r["user_s"], 1e-9) for r in rs)
            faults = statistics.median(r["faults_per_image"] for r in rs)
            print(f"| {what} | {bs} | {thp} | {speed:.1f} | {kernel:.0%} | {faults:,.0f} | {speed / base:.2f}x |")


if __name__ == "__main__":
    main()
