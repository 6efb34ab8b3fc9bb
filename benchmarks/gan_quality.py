"""How good, and how new, are the GAN's faces? The sheet in docs/gan.md and its three measures.

    python benchmarks/gan_quality.py --run /work/runs/gan_compare/split --generator /work/runs/gan/generator.pt \
        --sheet docs/gan_sheet.png --json /work/runs/gan/quality.json

1. The shipped classifier (packaged model ``default``) on generated faces: the share of generated
   class-0 faces scored below its stored tau (read as occluded), beside the same share for real
   class-0 faces of the split's held-out part (the shipped model may have trained on some of those:
   its own split differs, so that rate is an optimistic reference, not a held-out figure).
2. A Frechet distance (FID-style) in that classifier's embedding (the input of its last linear
   layer, reduced by PCA to 64 dims fitted on real training faces), every set cut to the same size:
   generated class 0 vs real class-0 training faces, beside two references: held-out real class 0
   vs the same (the floor: what a perfect generator would score) and held-out real class 1 vs it.
3. Duplicates: each generated face's nearest training image (any class; L2 on 32x32 pixels), and
   the same distance for held-out real class-0 faces as the reference for "new but similar".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from compare_models import DATA  # noqa: E402

PCA_DIMS, SHEET_N = 64, 16


def embed_with_last_linear_input(engine, images: np.ndarray) -> np.ndarray:
    """The input of the scorer's last ``nn.Linear`` (its penultimate features), for any registry model."""
    import torch
    net = engine.scorer.members[0]
    last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
    feats = []
    hook = last.register_forward_pre_hook(lambda _m, args: feats.append(args[0].detach().flatten(1).clone()))
    try:
        engine.score(images, batch_size=256)
    finally:
        hook.remove()
    return torch.cat(feats).numpy().astype(np.float64)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(ca @ cb).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * covmean))


def nearest(queries: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index, distance)`` of each query's nearest pool image; L2 per pixel on 32x32 (RMS in [0, 1])."""
    import torch
    import torch.nn.functional as F

    def small(x):
        return F.avg_pool2d(torch.from_numpy(np.asarray(x)).float().div(255), 2).flatten(1)

    q, p = small(queries), small(pool)
    best_d, best_i = [], []
    for s in range(0, len(q), 256):
        d = torch.cdist(q[s:s + 256], p)
        v, i = d.min(1)
        best_d.append(v), best_i.append(i)
    return torch.cat(best_i).numpy(), (torch.cat(best_d) / np.sqrt(p.shape[1])).numpy()


def write_sheet(path, generated, nearest_train, real):
    """Three labelled blocks of SHEET_N faces: generated class 0, the nearest training image of each,
    real class-0 training faces."""
    import torch
    from PIL import Image, ImageDraw
    from torchvision.utils import make_grid

    from clearface.outputs import atomic_path
    blocks = []
    for title, imgs in (("generated class 0 (occluded)", generated),
                        ("nearest training image of each (any class)", nearest_train),
                        ("real class-0 training faces", real)):
        grid = make_grid(torch.from_numpy(np.asarray(imgs)), nrow=SHEET_N // 2, padding=2, pad_value=255)
        img = Image.fromarray(grid.permute(1, 2, 0).numpy()).resize((grid.shape[2] * 2, grid.shape[1] * 2),
                                                                      Image.NEAREST)
        canvas = Image.new("RGB", (img.width, img.height + 22), "white")
        ImageDraw.Draw(canvas).text((6, 4), title, fill="black")
        canvas.paste(img, (0, 22))
        blocks.append(canvas)
    sheet = Image.new("RGB", (blocks[0].width, sum(b.height for b in blocks)), "white")
    y = 0
    for b in blocks:
        sheet.paste(b, (0, y))
        y += b.height
    with atomic_path(path, ".png") as tmp:
        sheet.save(tmp, format="PNG")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="the run folder whose split the GAN trained on")
    ap.add_argument("--generator", required=True)
    ap.add_argument("--n", type=int, default=2000, help="generated class-0 faces to measure")
    ap.add_argument("--sheet", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--cache-dir", default=None)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(1)
    from clearface.data import load_labelled
    from clearface.data.split import TEST, TRAIN
    from clearface.engines import TorchEngine
    from clearface.gan.sampling import build_generator, draw, load_generator_file
    from clearface.modelfile import load_model_file, packaged_model_path
    from clearface.rundir import RunDir

    run = RunDir(args.run)
    n_rows = len(run.read_split())
    s, y = load_labelled(DATA / "train_img.zip", DATA / "label_train.txt", limit=n_rows, cache_dir=args.cache_dir)
    parts = run.read_split(s.names)
    train, test = np.flatnonzero(parts == TRAIN), np.flatnonzero(parts == TEST)
    real0_train, real0_test = s.images[train[y[train] == 0]], s.images[test[y[test] == 0]]
    real1_test, train_images = s.images[test[y[test] == 1]], np.ascontiguousarray(s.images[train])

    blob = load_generator_file(args.generator)
    gen = build_generator(blob)
    fake0 = draw(gen, args.n, 0, seed=0).numpy()
    fake1 = draw(gen, 500, 1, seed=1).numpy()

    model = load_model_file(packaged_model_path("default"))
    engine, tau = TorchEngine(model), float(model["threshold"])
    res = {"generator": str(args.generator), "gan_epochs": blob["epochs_done"], "n_generated_class0": args.n,
           "default_model_tau": tau}
    for name, imgs, cls in (("generated_class0", fake0, 0), ("heldout_real_class0", real0_test, 0),
                            ("generated_class1", fake1, 1), ("heldout_real_class1", real1_test[:500], 1)):
        p = engine.score(imgs, 256)
        res[name] = {"n": len(imgs), "read_as_own_class": float(((p < tau) if cls == 0 else (p >= tau)).mean()),
                     "median_score": float(np.median(p)), "score_q10_q90": [float(np.quantile(p, q)) for q in (.1, .9)]}

    # Frechet distance: every set the same size, PCA fitted on real training faces of both classes
    m = min(len(real0_test), len(real1_test), args.n, len(real0_train))
    rng = np.random.default_rng(0)
    pick = lambda a: a[rng.choice(len(a), m, replace=False)]  # noqa: E731
    feats = {k: embed_with_last_linear_input(engine, pick(v)) for k, v in (
        ("real0_train", real0_train), ("fake0", fake0), ("real0_test", real0_test), ("real1_test", real1_test))}
    fit = embed_with_last_linear_input(engine, train_images[rng.choice(len(train_images), 2000, replace=False)])
    mean = fit.mean(0)
    basis = np.linalg.svd(fit - mean, full_matrices=False)[2][:PCA_DIMS].T
    proj = {k: (v - mean) @ basis for k, v in feats.items()}
    res["frechet_pca64_n"] = m
    res["frechet_generated0_vs_train0"] = frechet(proj["fake0"], proj["real0_train"])
    res["frechet_heldout0_vs_train0 (floor)"] = frechet(proj["real0_test"], proj["real0_train"])
    res["frechet_heldout1_vs_train0 (other class)"] = frechet(proj["real1_test"], proj["real0_train"])

    # duplicates: nearest training image of every generated face, vs held-out real faces' nearest
    nn_idx, nn_fake = nearest(fake0, train_images)
    _, nn_real = nearest(real0_test, train_images)
    res["nn_rms_generated0"] = {"median": float(np.median(nn_fake)), "min": float(nn_fake.min()),
                                "q01": float(np.quantile(nn_fake, .01))}
    res["nn_rms_heldout_real0"] = {"median": float(np.median(nn_real)), "min": float(nn_real.min()),
                                   "q01": float(np.quantile(nn_real, .01))}
    res["generated_closer_than_every_heldout_real"] = int((nn_fake < nn_real.min()).sum())
    res["generated_near_copies_rms_below_0.02"] = int((nn_fake < 0.02).sum())
    print(json.dumps(res, indent=2))
    if args.json:
        from clearface.outputs import write_text_atomic
        write_text_atomic(args.json, json.dumps(res, indent=2))
    if args.sheet:
        real_pick = real0_train[np.random.default_rng(1).choice(len(real0_train), SHEET_N, replace=False)]
        write_sheet(args.sheet, fake0[:SHEET_N], train_images[nn_idx[:SHEET_N]], real_pick)


if __name__ == "__main__":
    main()
