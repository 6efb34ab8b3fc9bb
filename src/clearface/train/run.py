"""``clearface train``: ingest -> split -> fit (per fold) -> calibrate tau -> held-out score -> model file.

The run folder's files (resolved config, split, per-epoch summary, log, TensorBoard events,
checkpoints, validation/held-out scores, metrics and the model file) are named and written by
:class:`clearface.rundir.RunDir`.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from pathlib import Path

import numpy as np

from .. import settings
from .. import metrics
from ..calibration import choose_and_score
from ..data import load_labelled
from ..data.split import TEST, TRAIN, VAL, fold_parts, split_from_config
from ..errors import ClearfaceError
from ..engines import TorchEngine
from ..modelfile import make_model_file, save_model_file
from ..outputs import write_text_atomic
from ..rundir import RunDir
from .init_weights import init_state
from .targets import distilling, mix, read_suspects, read_teacher_scores, training_targets

log = logging.getLogger("clearface")


def _setup_logging(out: Path) -> None:
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    for h in (logging.FileHandler(RunDir(out).log_path), logging.StreamHandler()):
        h.setFormatter(fmt)
        log.addHandler(h)
    log.propagate = False


def _member(cfg: dict, model) -> dict:
    from ..models import get_model_entry
    builder = get_model_entry(cfg["model"]).builder
    build_kwargs = {}
    params = inspect.signature(builder).parameters
    if "pretrained" in params:  # the weights travel in the file: never look for ImageNet ones again
        build_kwargs["pretrained"] = False
    if "weights" in params:
        build_kwargs["weights"] = None
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    return {"model": cfg["model"], "model_kwargs": dict(cfg.get("model_kwargs") or {}),
            "build_kwargs": build_kwargs, "state_dict": state}


def _blob(cfg, members, tau=0.5, tau_source="", val_metrics=None):
    from ..models import get_model_entry
    entry = get_model_entry(cfg["model"])
    return make_model_file(members, entry.mean, entry.std, cfg["tta"], tau, cfg["threshold_method"],
                           tau_source, val_metrics or {}, cfg)


def _fit_one(cfg, images, labels, parts, run_dir: Path, resume: bool, seed: int, extra_train=None, teacher=None,
             gan=None, suspects=None, init=None):
    """``extra_train``: (images, labels, targets) trained on besides the training part; ``teacher``:
    per-image teacher scores of ``images`` (NaN outside the training part) when distilling; ``gan``:
    gan_oversample's ``(generator, class)``; ``suspects``: per-image out-of-fold scores of the flagged
    training images (NaN for the rest), dropped or used as targets by ``suspects.action``; ``init``: the
    starting weights (``init_from``; a resumed run's checkpoint replaces them)."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
    from lightning.pytorch.loggers import TensorBoardLogger

    from ..data.datamodule import FaceDataModule
    from .callbacks import EpochSummary, HoldoutTracker, StopAfter
    from .checkpoints import LAST, RunCheckpoints, check_weights_fit, load_best_weights
    from .module import HTERModule

    ckpt_dir = RunDir(run_dir).checkpoints
    # train() already read and checked every checkpoint of the run (_check_resumable_run) before any work
    last = ckpt_dir / LAST if resume and (ckpt_dir / LAST).exists() else None

    train_idx, val_idx = np.flatnonzero(parts == TRAIN), np.flatnonzero(parts == VAL)
    if suspects is not None:
        flagged = ~np.isnan(suspects[train_idx])
        log.info("%s: %d flagged training labels (%d labelled 0, %d labelled 1): %s", run_dir.name,
                 int(flagged.sum()), int((labels[train_idx][flagged] == 0).sum()),
                 int((labels[train_idx][flagged] == 1).sum()),
                 "left out" if cfg["suspects"]["action"] == "drop" else "trained on their out-of-fold score")
        if cfg["suspects"]["action"] == "drop":
            train_idx = train_idx[~flagged]
    y_train = labels[train_idx] if extra_train is None else np.concatenate([labels[train_idx], extra_train[1]])
    n1, n0 = int(y_train.sum()), int(len(y_train) - y_train.sum())
    pos_weight = n0 / max(1, n1)  # < 1 here: class 1 is the majority, so its loss is scaled down
    log.info("%s: train %d (%d class 0, %d class 1)%s, val %d; pos_weight %.4f",
             run_dir.name, len(y_train), n0, n1,
             f" incl. {len(extra_train[1])} pseudo-labelled" if extra_train is not None else "", len(val_idx), pos_weight)
    L.seed_everything(seed, workers=True, verbose=False)
    module = HTERModule(cfg, pos_weight, seed, gan, init)
    gan_ratio = float(cfg["gan"]["ratio"]) if cfg["imbalance"] == "gan_oversample" else 0.0
    targets = training_targets(labels[train_idx], None if teacher is None else teacher[train_idx],
                               None if suspects is None else suspects[train_idx], cfg)
    if targets is not None and extra_train is not None:
        targets = np.concatenate([targets, extra_train[2]])
    dm = FaceDataModule(images, labels, train_idx, val_idx, cfg["batch_size"], cfg["eval_batch_size"],
                        cfg["imbalance"], seed, None if extra_train is None else extra_train[:2], gan_ratio, targets)
    minutes = cfg.get("checkpoint_minutes", 10)
    callbacks = [RunCheckpoints(ckpt_dir, float(minutes) * 60 if minutes else None)]
    test_idx = np.flatnonzero(parts == TEST)
    if cfg.get("track_holdout") and len(test_idx):
        callbacks.append(HoldoutTracker(images[test_idx], labels[test_idx]))
    callbacks += [EpochSummary(RunDir(run_dir)), LearningRateMonitor("epoch")]
    if cfg.get("stop_after"):
        callbacks.append(StopAfter(int(cfg["stop_after"])))
    if cfg["early_stopping_patience"]:
        callbacks.append(EarlyStopping("val_hter", mode="min", patience=cfg["early_stopping_patience"]))
    trainer = L.Trainer(
        max_epochs=cfg["epochs"], max_time={"minutes": float(cfg["max_minutes"])} if cfg.get("max_minutes") else None,
        accelerator=cfg["accelerator"], devices=cfg["devices"],
        num_nodes=cfg["num_nodes"], strategy=cfg["strategy"], precision=cfg["precision"],
        callbacks=callbacks, logger=TensorBoardLogger(str(run_dir), name=RunDir.TENSORBOARD, version=""),
        default_root_dir=str(run_dir), num_sanity_val_steps=0, use_distributed_sampler=False,
        enable_progress_bar=bool(cfg["progress_bar"]), log_every_n_steps=cfg["log_every_n_steps"],
        enable_model_summary=False,
    )
    if last is not None:
        check_weights_fit(module, last)
        log.info("%s: resuming from %s", run_dir.name, last.relative_to(run_dir))
    trainer.fit(module, dm, ckpt_path=str(last) if last is not None else None, weights_only=True)
    best_epoch = load_best_weights(module, ckpt_dir)  # the fold's model is its best epoch (else its last)
    return trainer, module, val_idx, best_epoch


def _check_resumable_run(out: Path, folds: int) -> None:
    from ..data.cache import sweep_stale_temp
    from .checkpoints import check_resumable
    run = RunDir(out)
    for d in [run] if folds == 1 else [run.fold(k) for k in range(folds)]:
        check_resumable(d.checkpoints)
        for folder in (d.path, d.checkpoints):
            sweep_stale_temp(folder, hidden_only=True)


def train(data, labels, out, cfg: dict, resume: bool = False) -> dict:
    """Run the whole recipe; returns the metrics written to ``metrics.json``."""
    out = Path(out)
    gan_blob, gan = None, None
    if cfg["imbalance"] == "gan_oversample":  # no generator file: one line, before any data is read
        from ..gan.sampling import require_generator
        gan_blob = require_generator(cfg)
    if resume:  # refuse a planted or damaged checkpoint before any work, and clear a killed run's temp files
        _check_resumable_run(out, cfg["folds"])
    out.mkdir(parents=True, exist_ok=True)
    _setup_logging(out)
    t_start = time.perf_counter()
    import torch
    torch.set_num_threads(int(cfg["num_threads"] or len(os.sched_getaffinity(0))))

    imageset, y = load_labelled(data, labels, limit=cfg["limit_images"], step=cfg["preprocess"],
                                cache_dir=cfg["cache_dir"])
    images, hashes, names = imageset.images, imageset.hashes, imageset.names
    loaded = time.perf_counter() - t_start  # logged once the split exists: a bad split is then the only line

    run = RunDir(out)
    if resume and run.split_path.exists():
        parts = run.read_split()
        if len(parts) != len(y):
            raise ClearfaceError(f"{run.split_path}: {len(parts)} rows but the data has {len(y)} images")
    else:
        parts = split_from_config(cfg, hashes, y)
        run.write_split(names, y, parts)
    write_text_atomic(run.config_path, settings.dump(cfg))
    log.info("data: %d images from %s (%d class 0, %d class 1), loaded in %.1fs", len(y), data,
             int((y == 0).sum()), int(y.sum()), loaded)
    extra_train = _pseudo_labelled(cfg, hashes, parts)
    teacher = None
    if distilling(cfg):  # every image any fold trains on needs a teacher score; held-out ones are never read
        if not cfg["distill"].get("scores"):
            raise ClearfaceError("--distill.alpha < 1 needs --distill.scores (the teacher's `predict --scores` CSV)")
        teacher = read_teacher_scores(cfg["distill"]["scores"], names, parts != TEST)
        log.info("distillation: targets = %.2f x label + %.2f x teacher score at T %.2f (%s)",
                 cfg["distill"]["alpha"], 1 - cfg["distill"]["alpha"], cfg["distill"]["temperature"],
                 cfg["distill"]["scores"])
    suspects = _suspects(cfg, names, y, parts)
    init, init_record = init_state(cfg, hashes, y, parts) or (None, None)
    if gan_blob is not None:  # refuse a generator that saw a validation/held-out image, before training
        from ..gan.sampling import check_generator_for_run, generator_for_training
        check_generator_for_run(cfg, gan_blob, hashes, parts, y)
        gan = generator_for_training(gan_blob)  # built from the blob just checked: the file is read once

    folds = cfg["folds"]
    oof = np.full(len(y), np.nan, np.float32)
    members, best_epochs, trainer = [], [], None
    for k in range(folds):
        fold_dir = out if folds == 1 else run.fold(k).path
        fold_dir.mkdir(exist_ok=True)
        p = parts if folds == 1 else fold_parts(parts, k)
        trainer, module, val_idx, best_epoch = _fit_one(cfg, images, y, p, fold_dir, resume, cfg["seed"] + k,
                                                        extra_train, teacher, gan, suspects, init)
        if trainer.global_rank != 0:
            continue
        best_epochs.append(best_epoch)
        member = _member(cfg, module.scoring_model)
        members.append(member)
        oof[val_idx] = TorchEngine(_blob(cfg, [member])).score(images[val_idx], cfg["eval_batch_size"])

    result: dict = {}
    if trainer is None or trainer.global_rank == 0:
        result = _calibrate_and_save(cfg, run, images, y, parts, oof, members, names)
        result["train_minutes"] = round((time.perf_counter() - t_start) / 60, 2)
        # the epoch each model file member comes from (min val_hter; None: no epoch finished validation)
        result["best_epoch"] = best_epochs[0] if folds == 1 else best_epochs
        if init_record:
            result["init_from"] = init_record  # the minutes above are this stage's only
        run.write_metrics(result)
        log.info("done in %.1f min: val HTER %.4f at tau %.4f%s%s", result["train_minutes"], result["val"]["hter"],
                 result["threshold"], f"; held-out HTER {result['test']['hter']:.4f}" if "test" in result else "",
                 f" (model from epoch {result['best_epoch']})" if folds == 1 and result["best_epoch"] else "")
    if trainer is not None and trainer.world_size > 1:
        trainer.strategy.barrier("clearface-done")  # let rank 0 finish writing before tear-down
    return result


def _suspects(cfg, names, y, parts):
    """Out-of-fold scores of the audit's flagged images that any fold may train on (NaN elsewhere), or None
    (``suspects.action: keep``). Held-out images are never read: they score the run."""
    s = cfg["suspects"]
    if s["action"] == "keep":
        if s.get("file"):
            log.info("suspects: %s not used (--suspects.action keep trains on every label as given)", s["file"])
        return None
    if not s.get("file"):
        raise ClearfaceError(f"--suspects.action {s['action']} needs --suspects.file (the CSV `clearface audit` writes)")
    suspects = read_suspects(s["file"], names, y, parts != TEST)
    log.info("suspects: %d flagged labels outside the held-out part, from %s (action: %s)",
             int((~np.isnan(suspects)).sum()), s["file"], s["action"])
    return suspects


def _pseudo_labelled(cfg, hashes, parts):
    """Training-only extra images from ``pseudo_data``/``pseudo_labels`` as (images, labels, targets), or None.

    The targets are the labels, or (distilling) the labels mixed with the CSV's teacher scores.
    An unlabelled image that is pixel-identical to a validation or held-out image is dropped: its
    teacher label would otherwise leak into the images that choose tau or score the run.
    """
    if not (cfg.get("pseudo_data") or cfg.get("pseudo_labels")):
        return None
    if not (cfg.get("pseudo_data") and cfg.get("pseudo_labels")):
        raise ClearfaceError("pseudo_data and pseudo_labels go together: give both or neither")
    from ..data import load_images
    from ..pseudolabel import read_pseudo_labels
    unl = load_images(cfg["pseudo_data"], cfg["preprocess"], cache_dir=cfg["cache_dir"])
    pos, lab, score = read_pseudo_labels(cfg["pseudo_labels"], unl.names)
    if distilling(cfg) and score is None:
        raise ClearfaceError(f"{cfg['pseudo_labels']}: distillation (--distill.alpha < 1) needs a 'score' column "
                             "(`clearface predict --scores` writes one)")
    scored = np.isin(unl.hashes[pos], hashes[parts != TRAIN])
    if scored.any():
        log.info("pseudo-labels: %d images dropped, identical to validation/held-out images", int(scored.sum()))
        pos, lab = pos[~scored], lab[~scored]
        score = None if score is None else score[~scored]
    log.info("pseudo-labels: %d images from %s (%d class 0, %d class 1)", len(lab), cfg["pseudo_data"],
             int((lab == 0).sum()), int(lab.sum()))
    targets = lab.astype(np.float32)
    if distilling(cfg):
        d = cfg["distill"]
        targets = mix(lab, score, float(d["alpha"]), float(d["temperature"]))
    return np.ascontiguousarray(unl.images[pos]), lab, targets


def _calibrate_and_save(cfg, run: RunDir, images, y, parts, oof, members, names) -> dict:
    calib = ~np.isnan(oof)
    source = ("validation split" if cfg["folds"] == 1 else f"out-of-fold validation scores of {cfg['folds']} folds")
    source = f"{source} ({int(calib.sum())} images)"
    blob = _blob(cfg, members, tau_source=source)
    test = np.flatnonzero(parts == TEST)
    s = TorchEngine(blob).score(images[test], cfg["eval_batch_size"]) if test.size else None
    result = choose_and_score(oof[calib], y[calib], cfg["threshold_method"], source, s, y[test])
    result["val_at_0.5"] = metrics.summarize(oof[calib], y[calib], 0.5).as_dict()
    tau = result["threshold"]
    blob.update(threshold=float(tau), metrics={k: result[k] for k in ("val", "test") if k in result})
    if test.size:
        run.write_scores(TEST, [names[i] for i in test], y[test], s, tau)
    run.write_scores(VAL, [names[i] for i in np.flatnonzero(calib)], y[calib], oof[calib], tau)
    save_model_file(blob, run.model_path)
    return result
