"""Does int8 hold quality? The three gates of issue 14 for a model file, float ONNX vs int8 ONNX.

    nice -n 5 .venv/bin/python benchmarks/bench_int8.py --model default [--model ensemble]

For each model: the validation and held-out parts of ``train_img.zip`` are recomputed with
``make_split`` from the settings stored in the model file's ``config`` (the float validation
HTER at the stored tau is printed next to the stored one: equal figures prove the split is the
same). The float ONNX export is quantised (``clearface.quantize``), calibrated on
``--calib-images`` images of the validation part (never the held-out part). Then:

- agreement: labels of float (stored tau) vs int8 (tau re-chosen on validation for the int8
  scores) on ``val_img.zip`` (also at the float tau, for reference);
- HTER: tau chosen on the validation part for each engine's scores, scored on the 10k held-out
  part, with its bootstrap interval;
- speed: float and int8 sessions with the same threads on the same images, timed interleaved
  (best of ``--speed-reps``), because the CPU is shared and noisy; the ratio is from this run.

With ``--fallback-agreement A`` (or ``--int8-file`` of an export that has its band) the same gates
are also measured for int8 with float re-scoring near tau (``--engine int8``,
:class:`clearface.engines.FallbackEngine`): the band is the file's, or chosen here on the
validation part; the timing includes the float re-scoring of the timed images inside it.

    nice -n 5 .venv/bin/python benchmarks/bench_int8.py --model default \
        --int8-file src/clearface/weights/clearface_default.int8.onnx

Prints a markdown table (and ``--json`` writes every figure).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def paired_speed(engines, images, reps: int, batch_size: int) -> list[float]:
    """Images/s of each engine: best of ``reps`` interleaved passes over the same images."""
    best = [float("inf")] * len(engines)
    for _ in range(reps):
        for i, eng in enumerate(engines):
            t0 = time.perf_counter()
            eng.score(images, batch_size=batch_size)
            best[i] = min(best[i], time.perf_counter() - t0)
    return [len(images) / b for b in best]


def split_of(blob, train):
    from clearface.data.split import split_from_config
    return split_from_config(blob["config"], train["hashes"], train["labels"])


def measure(model: str, train: dict, unlabelled: np.ndarray, args, workdir: Path) -> dict:
    from clearface import metrics
    from clearface.engines import FallbackEngine, OnnxEngine, available_cores, load_engine
    from clearface.modelfile import load_model_file
    from clearface.quantize import calibration_sample, int8_gates, near_threshold, quantize_onnx

    blob = load_model_file(model)
    threads = args.threads or available_cores()
    parts = split_of(blob, train)
    val, test = np.flatnonzero(parts == "val"), np.flatnonzero(parts == "test")
    y = train["labels"]
    float_path = Path(load_engine(model, "onnx", cache_dir=args.cache_dir).info["onnx"])
    fl = OnnxEngine(float_path, threads=threads)
    log = lambda msg: print(f"[{model}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    log(f"split: {val.size} validation, {test.size} held-out; float ONNX {float_path.name}")

    t0 = time.perf_counter()
    f_val = fl.score(train["images"][val])
    stored_tau = float(blob["threshold"])
    stored_val = (blob.get("metrics") or {}).get("val") or {}
    check = metrics.summarize(f_val, y[val], stored_tau)
    log(f"split check: float validation HTER at stored tau {check.hter:.5f} (n={check.n}) vs stored "
        f"{stored_val.get('hter', float('nan')):.5f} (n={stored_val.get('n')}) [{time.perf_counter() - t0:.0f} s]")

    calib = train["images"][val[calibration_sample(val.size, args.calib_images, seed=0)]]
    t0 = time.perf_counter()
    if args.int8_file:  # measure a file made elsewhere (e.g. the packaged one) instead of quantising here
        int8_path = Path(args.int8_file)
        if int8_path.suffix == ".json":  # a recipe: the file it rebuilds, byte-identical or refused
            from clearface.quantize import build_from_recipe
            built = workdir / f"{Path(str(model)).stem}.recipe.int8.onnx"
            build_from_recipe(float_path, int8_path, built)
            int8_path = built
        q = OnnxEngine(int8_path, threads=threads)
        qm = q.meta["quantization"]
        settings = dict(fmt=qm["format"], activations=qm["activations"], calibration=qm["calibration"],
                        reduce_range=qm["reduce_range"], percentile=qm.get("percentile"))
        calib = calib[:qm["calibration_images"]]  # for the printed count only
    else:
        int8_path = workdir / f"{Path(str(model)).stem}.int8.onnx"
        settings = dict(fmt=args.format, activations=args.activations, calibration=args.calibration,
                        reduce_range=not args.full_range, percentile=args.percentile)
        quantize_onnx(float_path, int8_path, calib, **settings)
        q = OnnxEngine(int8_path, threads=threads)
    t_quant = time.perf_counter() - t0
    log(f"quantised in {t_quant:.0f} s: {int8_path.stat().st_size / 1e6:.2f} MB (float {float_path.stat().st_size / 1e6:.2f} MB)")

    q_val = q.score(train["images"][val])
    f_test, q_test = fl.score(train["images"][test]), q.score(train["images"][test])
    f_un, q_un = fl.score(unlabelled), q.score(unlabelled)
    fallback = _fallback(q, args, f_val, q_val, stored_tau, val.size)
    casc = FallbackEngine(q, fl, stored_tau, fallback["margin_logit"]) if fallback else None
    speed_imgs = np.ascontiguousarray(unlabelled[:args.speed_images])
    engines = [fl, q] + ([casc] if casc else [])
    for e in engines:
        e.score(speed_imgs[:64])  # warm-up
    ips = paired_speed(engines, speed_imgs, args.speed_reps, args.batch_size)
    f_ips, q_ips = ips[:2]
    rule = blob.get("threshold_method") or "min_hter"
    source = f"validation part ({val.size} images of train_img.zip)"
    gates = int8_gates(y[val], f_val, q_val, y[test], f_test, q_test, f_un, q_un, stored_tau, q_ips / f_ips,
                       rule=rule, source=source)
    if casc:
        c_val, c_test, c_un = (casc.score(x) for x in (train["images"][val], train["images"][test], unlabelled))
        cg = int8_gates(y[val], f_val, c_val, y[test], f_test, c_test, f_un, c_un, stored_tau, ips[2] / f_ips,
                        rule=rule, source=source)
        at_stored = [metrics.summarize(s_, y[test], stored_tau).hter for s_ in (f_test, c_test)]
        speed_band = near_threshold(q.score(speed_imgs), stored_tau, fallback["margin_logit"]).mean()
        fallback.update(gates=cg, int8_ips=ips[2], heldout_hter_at_stored_tau=at_stored,
                        band_share={"unlabelled": float(near_threshold(q_un, stored_tau, fallback["margin_logit"]).mean()),
                                    "speed_images": float(speed_band)})
        log(f"int8 + float near tau (margin {fallback['margin_logit']:.3f} logit): agreement {cg['agreement']:.4%}, "
            f"held-out shift {cg['hter_shift']:+.4f}, speed {ips[2] / f_ips:.2f}x")
    log(f"held-out HTER float {gates['float']['test']['hter']:.4f}, int8 {gates['int8']['test']['hter']:.4f}")
    res = {
        "model": str(model), "threads": threads, "quantization": settings, "calibration_images": int(len(calib)),
        "int8_mb": int8_path.stat().st_size / 1e6, "float_mb": float_path.stat().st_size / 1e6,
        "split_check": {"val_hter_at_stored_tau": check.hter, "stored_val_hter": stored_val.get("hter"), "n": check.n},
        "float_ips": f_ips, "int8_ips": q_ips, "speed_images": int(len(speed_imgs)), "stored_tau": stored_tau,
        "max_abs_score_diff_unlabelled": float(np.max(np.abs(f_un - q_un))), **gates, "fallback": fallback,
    }
    if args.keep and not args.int8_file:
        res["int8_path"] = str(Path(args.keep) / int8_path.name)
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        int8_path.replace(res["int8_path"])
    return res


def _fallback(q, args, f_val, q_val, tau: float, n_val: int) -> dict | None:
    """The float re-scoring band: the int8 file's own (``--int8-file``), or chosen here on the
    validation part with ``--fallback-agreement``; None for pure int8 only."""
    from clearface.quantize import choose_fallback_margin
    if args.int8_file and q.meta.get("fallback"):
        fb = dict(q.meta["fallback"])
        if abs(fb["threshold"] - tau) > 1e-9:
            raise SystemExit(f"{args.int8_file}: its fallback band is around tau {fb['threshold']}, the model's is {tau}")
        return {"margin_logit": float(fb["margin_logit"]), "chosen_on": fb.get("chosen_on"), "from_file": True}
    if args.fallback_agreement is None:
        return None
    margin = choose_fallback_margin(f_val, q_val, tau, args.fallback_agreement)
    return {"margin_logit": margin, "chosen_on": f"validation part ({n_val} images)", "from_file": False}


def table(results: list[dict]) -> str:
    def ci(r):
        lo, hi = r["test"]["hter_ci95"]
        return f"{r['test']['hter']:.4f} ({lo:.4f}–{hi:.4f})"
    lines = ["| model | float img/s | int8 img/s | speed ratio (≥ 1.7) | labels agree on val_img.zip (≥ 99.5 %) | "
             "same tau | val-tau float / int8 | held-out HTER float | held-out HTER int8 | shift (≤ 0.002) | passes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        g = r["passed"]
        mark = lambda ok: "" if ok else " ✗"  # noqa: E731
        lines.append(f"| {Path(r['model']).stem} | {r['float_ips']:.0f} | {r['int8_ips']:.0f} | {r['speedup']:.2f}x{mark(g['speedup'])} | "
                     f"{100 * r['agreement']:.2f} % (n={r['agreement_n']}){mark(g['agreement'])} | "
                     f"{100 * r['agreement_same_tau']:.2f} % | {r['float']['threshold']:.4f} / {r['int8']['threshold']:.4f} | "
                     f"{ci(r['float'])} | {ci(r['int8'])} | {r['hter_shift']:+.4f}{mark(g['hter_shift'])} | "
                     f"{'yes' if r['passes'] else 'no'} |")
        fb = r.get("fallback")
        if fb and fb.get("gates"):
            c, g = fb["gates"], fb["gates"]["passed"]
            lines.append(f"| {Path(r['model']).stem}, int8 + float within {fb['margin_logit']:.3f} logit of tau "
                         f"({100 * fb['band_share']['speed_images']:.1f} % of the timed images re-scored) | "
                         f"{r['float_ips']:.0f} | {fb['int8_ips']:.0f} | {c['speedup']:.2f}x{mark(g['speedup'])} | "
                         f"{100 * c['agreement']:.2f} % (n={c['agreement_n']}){mark(g['agreement'])} | "
                         f"{100 * c['agreement_same_tau']:.2f} % | {c['float']['threshold']:.4f} / {c['int8']['threshold']:.4f} | "
                         f"{ci(c['float'])} | {ci(c['int8'])} | {c['hter_shift']:+.4f}{mark(g['hter_shift'])} | "
                         f"{'yes' if c['passes'] else 'no'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="model file or packaged name (repeatable; default: default)")
    ap.add_argument("--train-data", default=str(DATA / "train_img.zip"))
    ap.add_argument("--train-labels", default=str(DATA / "label_train.txt"))
    ap.add_argument("--unlabelled", default=str(DATA / "val_img.zip"), help="images for the label agreement")
    ap.add_argument("--agree-limit", type=int, default=None, help="only the first N unlabelled images (slow ensembles)")
    ap.add_argument("--calib-images", type=int, default=1000)
    ap.add_argument("--format", default="qdq", choices=("qdq", "qoperator"))
    ap.add_argument("--activations", default="u8", choices=("u8", "s8"))
    ap.add_argument("--calibration", default="minmax", choices=("minmax", "percentile", "entropy"))
    ap.add_argument("--percentile", type=float, default=99.999, help="with --calibration percentile: the share of "
                    "each tensor's absolute values its range covers (needs ~12 GB for 1,000 images of a 96 px model: "
                    "onnxruntime keeps every activation until the end)")
    ap.add_argument("--full-range", action="store_true", help="8-bit weights (default: 7-bit reduce_range)")
    ap.add_argument("--int8-file", default=None, metavar="PATH", help="measure this int8 export (.onnx, or a .json "
                    "recipe, rebuilt here) of the (one) model instead of quantising here, with its own float "
                    "re-scoring band if it has one")
    ap.add_argument("--fallback-agreement", type=float, default=None, metavar="A", help="also measure int8 with "
                    "float re-scoring near tau, the band chosen on the validation part for agreement A (e.g. 0.999)")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads for both engines (default: all cores)")
    ap.add_argument("--speed-images", type=int, default=1024)
    ap.add_argument("--speed-reps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep the int8 ONNX files in DIR")
    ap.add_argument("--json", default=None, metavar="PATH", help="write every figure as JSON")
    args = ap.parse_args(argv)

    from clearface.data import load_images, read_labels
    t0 = time.perf_counter()
    tr = load_images(args.train_data, cache_dir=args.cache_dir)
    train = {"images": tr.images, "hashes": tr.hashes, "labels": read_labels(args.train_labels, expected=len(tr))}
    unlabelled = load_images(args.unlabelled, cache_dir=args.cache_dir, limit=args.agree_limit).images
    print(f"data loaded in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="clearface_bench_int8_") as tmp:
        for model in args.model or ["default"]:
            results.append(measure(model, train, unlabelled, args, Path(tmp)))
            print(table(results[-1:]), file=sys.stderr, flush=True)
    q = results[0]["quantization"]
    print(f"\nint8: {q['fmt'].upper()}, {q['activations'].upper()} activations / S8 per-channel weights"
          f"{' (7-bit, reduce_range)' if q['reduce_range'] else ''}, {q['calibration']} calibration"
          f"{' at ' + str(q['percentile']) if q['calibration'] == 'percentile' else ''} on "
          f"{results[0]['calibration_images']} validation images; {results[0]['threads']} threads, speed on "
          f"{results[0]['speed_images']} images, best of {args.speed_reps} interleaved passes. tau chosen on the "
          "validation part; HTER scored on the held-out part (95 % bootstrap CI).\n")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
