"""The HTER cost of the photo front end: held-out crops scored as 64x64 crops vs pasted into photos.

    nice -n 5 .venv/bin/python benchmarks/frontend_cost.py [--n-pos 1790] [--all] [--out DIR]

1. Rebuild the packaged model's split of ../shared/data/train_img.zip with
   ``clearface.data.split.split_from_config`` and the settings stored in the model file's ``config``
   (``holdout``, ``holdout_seed``, ``split_seed``, ``val_fraction``, ``folds``) on the pixel hashes
   of ``clearface.data.load_images``; score its validation part and check n, class counts, HTER and
   AUC against the model file's stored validation metrics: equal figures prove the split is the one
   tau was chosen on (done last, after the long detection part; a mismatch is printed loudly).
2. Take the held-out (``test``) part: every label-0 image and ``--n-pos`` label-1 images drawn with
   seed 0 (``--all``: all of them). Each crop is enlarged with Lanczos to a side drawn from 96..200 px
   and pasted at a random place on a 500x400 canvas of ``clearface.faces.synthetic`` (seed = image
   index; the canvas mosaic is cut from 2000 training-part images, never held-out ones).
3. Score both paths with the same float model (PyTorch engine) at the stored tau (chosen on
   validation): ``crop`` = the 64x64 image itself; ``detect`` = ``find_faces`` on the photo with the
   framing ``predict --preprocess detect`` would use for this model, the
   largest face's crop decides; a photo with no face counts as label 0 with score 0 (the
   one-label-per-photo rule of ``predict``).
4. Print both HTERs with bootstrap 95 % CIs (``metrics.summarize_with_ci``), the paired bootstrap CI
   of the difference, the detection rate and how often the largest face is the pasted one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CANVAS = (500, 400)
SIDES = (96, 200)


def check_validation(engine, blob, images, labels, parts) -> dict:
    """Score the rebuilt validation part; stop if it does not reproduce the stored metrics."""
    from clearface import metrics
    val = np.flatnonzero(parts == "val")
    s = metrics.summarize(engine.score(images[val]), labels[val], blob["threshold"]).as_dict()
    stored = blob["metrics"]["val"]
    same = (s["n"] == stored["n"] and s["n_pos"] == stored["n_pos"]
            and abs(s["hter"] - stored["hter"]) < 0.003 and abs(s["auc"] - stored["auc"]) < 0.002)
    row = {"n": s["n"], "n_pos": s["n_pos"], "hter": s["hter"], "auc": s["auc"],
           "stored_n": stored["n"], "stored_n_pos": stored["n_pos"], "stored_hter": stored["hter"],
           "stored_auc": stored["auc"], "same": bool(same)}
    return row


_JOB: dict = {}  # what the worker processes need, inherited through fork


def _one_photo(i: int):
    """Worker: compose photo ``i``, find its faces; ``(faces found, largest is the pasted one, crop or
    None)``, or None once the deadline has passed."""
    from clearface.faces import find_faces
    from clearface.faces.synthetic import expected_face_box, iou, paste_one
    j = _JOB
    if j["deadline"] is not None and time.time() > j["deadline"]:
        return None
    photo = paste_one(j["crops"][i], int(j["labels"][i]), int(j["sides"][i]), size=CANVAS, seed=int(j["seeds"][i]),
                      textures=j["textures"])
    faces = find_faces(photo.image, j["framing"])
    if not faces:
        return 0, False, None
    hit = iou(expected_face_box(photo.crop_boxes, j["face_in_crop"]), [faces[0].box])[0, 0] >= 0.4
    return len(faces), bool(hit), faces[0].crop


def _worker_init():
    import torch
    torch.set_num_threads(1)  # one photo per process: small tensors, no thread contention


def detect_scores(engine, crops, labels, seeds, textures, framing, deadline=None, workers=2,
                  progress_every=200):
    """Per image: detect-path score (0 if no face), faces found, and whether the largest is the pasted one.

    Photos are composed and searched in ``workers`` processes. Stops at ``deadline`` (``time.time()``):
    the arrays returned then cover only the first images, which is why callers pass them in a random order."""
    import multiprocessing as mp
    sides = np.random.default_rng(0).integers(SIDES[0], SIDES[1] + 1, len(crops))
    _JOB.update(crops=crops, labels=labels, seeds=seeds, sides=sides, textures=textures,
                framing=framing, face_in_crop=framing["box"], deadline=deadline)
    out = []
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(workers, initializer=_worker_init) as pool:
        for r in pool.imap(_one_photo, range(len(crops)), chunksize=4):
            if r is None:
                break
            out.append(r)
            if progress_every and len(out) % progress_every == 0:
                print(f"  {len(out)}/{len(crops)} photos, {len(out) / (time.perf_counter() - t0):.1f}/s",
                      file=sys.stderr, flush=True)
        pool.terminate()
    secs = time.perf_counter() - t0
    done = len(out)
    found = np.array([r[0] for r in out], np.int64)
    hit = np.array([r[1] for r in out], bool)
    have = [k for k, r in enumerate(out) if r[2] is not None]
    scores = np.zeros(done, np.float32)  # no face -> score 0 -> label 0
    if have:
        scores[have] = engine.score(np.stack([out[k][2] for k in have]))
    return scores, found, hit, sides[:done], secs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: the packaged default model)")
    ap.add_argument("--data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--labels", default=str(DATA / "label_train.txt"))
    ap.add_argument("--n-pos", type=int, default=1790, help="label-1 held-out images to use (all label-0 ones are used)")
    ap.add_argument("--all", action="store_true", help="every held-out image")
    ap.add_argument("--limit", type=int, default=None, help="only the first N chosen images (smoke runs)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="stop composing/detecting after this long and report the images done so far "
                         "(the chosen images are processed in a random order, so those done are a random subset)")
    ap.add_argument("--workers", type=int, default=2, help="processes composing and searching photos")
    ap.add_argument("--out", default=None, help="folder for frontend_cost.json and per-image scores.csv")
    args = ap.parse_args(argv)

    import torch

    from clearface import metrics
    from clearface.data import load_images, read_labels
    from clearface.data.split import split_from_config
    from clearface.engines import load_engine
    from clearface.modelfile import load_model_file
    from clearface.outputs import write_text_atomic
    from clearface.preprocess import resolve
    torch.set_num_threads(max(1, args.workers))

    blob = load_model_file(args.model)
    engine = load_engine(args.model, "torch", blob=blob)
    tau = float(blob["threshold"])
    t0 = time.perf_counter()
    imgs = load_images(args.data)
    labels = read_labels(args.labels, expected=len(imgs))
    parts = split_from_config(blob["config"], imgs.hashes, labels)
    print(f"decoded + split in {time.perf_counter() - t0:.0f} s: " + ", ".join(
        f"{p} {int((parts == p).sum())}" for p in ("train", "val", "test")), file=sys.stderr)

    test = np.flatnonzero(parts == "test")
    neg, pos = test[labels[test] == 0], test[labels[test] == 1]
    if not args.all:
        pos = np.sort(np.random.default_rng(0).choice(pos, min(args.n_pos, pos.size), replace=False))
    chosen = np.random.default_rng(2).permutation(np.concatenate([neg, pos]))
    if args.limit:
        chosen = chosen[:args.limit]
    train = np.flatnonzero(parts == "train")
    textures = np.ascontiguousarray(imgs.images[np.random.default_rng(1).choice(train, 2000, replace=False)]
                                    .transpose(0, 2, 3, 1))
    crops, y = np.asarray(imgs.images[chosen]), labels[chosen].astype(np.int64)
    print(f"held-out images used: {len(chosen)} ({int((y == 0).sum())} label 0, {int((y == 1).sum())} label 1)",
          file=sys.stderr)

    _, framing = resolve(blob, "detect")  # the framing `predict --preprocess detect` uses with this model
    deadline = time.time() + 60 * args.minutes if args.minutes else None
    s_det, found, hit, sides, secs = detect_scores(engine, crops, y, chosen, textures, framing, deadline,
                                                   args.workers)
    planned = len(y)
    chosen, crops, y = chosen[:len(s_det)], crops[:len(s_det)], y[:len(s_det)]
    s_crop = engine.score(crops)
    val_row = check_validation(engine, blob, imgs.images, labels, parts)  # after the long part: fork copies less
    print(f"validation {'reproduced' if val_row['same'] else 'NOT REPRODUCED'}: n {val_row['n']} "
          f"(stored {val_row['stored_n']}), HTER {val_row['hter']:.4f} (stored {val_row['stored_hter']:.4f}), "
          f"AUC {val_row['auc']:.4f} (stored {val_row['stored_auc']:.4f})", file=sys.stderr)
    crop_sum = metrics.summarize_with_ci(s_crop, y, tau)
    det_sum = metrics.summarize_with_ci(s_det, y, tau)
    diff_ci = metrics.paired_hter_diff(s_crop, tau, s_det, tau, y, n_boot=1000)[1:]
    result = {
        "model": blob["path"], "tau": tau, "tau_source": f"{blob.get('threshold_method')} on {blob.get('threshold_source')}",
        "scored_on": f"held-out part of {args.data} (split rebuilt from the model file's config)",
        "validation_check": val_row, "n": int(len(y)), "n_neg": int((y == 0).sum()), "n_pos": int((y == 1).sum()),
        "planned": planned, "all_held_out": bool(args.all and len(y) == planned), "canvas": CANVAS, "face_sides": SIDES,
        "crop": crop_sum, "detect": det_sum,
        "hter_diff": det_sum["hter"] - crop_sum["hter"], "hter_diff_ci95": list(diff_ci),
        "detected_share": float((found > 0).mean()), "largest_is_pasted_share": float(hit.mean()),
        "extra_faces": int(np.maximum(found - 1, 0).sum()), "label_agreement": float(((s_crop >= tau) == (s_det >= tau)).mean()),
        "no_face_rule": "a photo with no face counts as label 0, score 0",
        "seconds_detect_path": secs, "photos_per_s": len(y) / secs,
    }
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "frontend_cost.json", json.dumps(result, indent=1))
        rows = ["index,label,side,faces_found,largest_is_pasted,score_crop,score_detect"]
        rows += [f"{i + 1},{l},{s},{f},{int(h)},{a:.6f},{b:.6f}" for i, l, s, f, h, a, b
                 in zip(chosen, y, sides, found, hit, s_crop, s_det)]
        write_text_atomic(out / "scores.csv", "\n".join(rows) + "\n")

    if len(y) < planned:
        print(f"\nstopped at --minutes {args.minutes}: {len(y)} of the {planned} chosen images done (a random subset)")
    print(f"\nFront-end cost, {len(y)} held-out images ({result['n_neg']} label 0, {result['n_pos']} label 1), "
          f"tau {tau:.4f} chosen on validation ({result['tau_source']})\n")
    print(f"Split check: the rebuilt validation part gives n {val_row['n']}, HTER {val_row['hter']:.4f}, AUC "
          f"{val_row['auc']:.4f}; the model file stores n {val_row['stored_n']}, HTER {val_row['stored_hter']:.4f}, "
          f"AUC {val_row['stored_auc']:.4f} ({'same split' if val_row['same'] else 'MISMATCH: figures below are not valid'})\n")
    print("| path | FAR | FRR | HTER | HTER 95 % CI | AUC |")
    print("|---|---|---|---|---|---|")
    for name, s in (("crop (64x64 as is)", crop_sum), ("detect (pasted in 500x400 photo)", det_sum)):
        print(f"| {name} | {s['far']:.4f} | {s['frr']:.4f} | {s['hter']:.4f} | "
              f"[{s['hter_ci95'][0]:.4f}, {s['hter_ci95'][1]:.4f}] | {s['auc']:.4f} |")
    print(f"\nHTER detect - crop: {result['hter_diff']:+.4f} (paired 95 % CI [{diff_ci[0]:+.4f}, {diff_ci[1]:+.4f}]); "
          f"goal within 0.005")
    print(f"face found in {result['detected_share']:.2%} of photos; largest face is the pasted one in "
          f"{result['largest_is_pasted_share']:.2%}; extra faces {result['extra_faces']}; same label both paths "
          f"{result['label_agreement']:.2%}; {result['photos_per_s']:.1f} photos/s (compose + detect + cut, {args.workers} processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
