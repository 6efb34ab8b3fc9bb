"""The settings themselves: one typed, documented field each; the defaults are the default recipe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


def _s(default, meaning: str, kind: str, *, lo=None, hi=None, lo_open=False, hi_open=False,
       choices=None, nullable=False, factory=False):
    """A settings field: its default, one line of meaning, and what values it takes."""
    meta = {"help": meaning, "kind": kind, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open,
            "choices": choices, "nullable": nullable}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class AugmentSettings:
    """Training-time augmentation (``clearface.data.augment.AugmentConfig``); these are the neutral values."""
    flip: bool = _s(True, "horizontal flip with p = 0.5", "bool")
    translate: float = _s(0.06, "max shift, as a fraction of the side", "float", lo=0, hi=1, hi_open=True)
    scale: tuple = _s(lambda: [0.9, 1.12], "zoom range [lo, hi] (>1 zooms in), uniform in log-space", "range",
                      factory=True)
    rotate: float = _s(8.0, "max rotation, degrees", "float", lo=0, hi=180)
    brightness: float = _s(0.25, "multiplicative brightness jitter, 1 ± b", "float", lo=0, hi=1)
    contrast: float = _s(0.25, "contrast jitter (blend with the image mean), 1 ± c", "float", lo=0, hi=1)
    saturation: float = _s(0.3, "saturation jitter (blend with grey), 1 ± s", "float", lo=0, hi=1)
    grayscale: float = _s(0.05, "probability of a grey image", "float", lo=0, hi=1)
    erase: float = _s(0.0, "probability of one random erased rectangle", "float", lo=0, hi=1)
    lowres: float = _s(0.0, "probability of a down-sampled (16-48 px) and re-enlarged image", "float", lo=0, hi=1)
    mixup: float = _s(0.0, "mixup alpha (0 = off); labels become soft", "float", lo=0, hi=10)


@dataclass
class GanSettings:
    """imbalance gan_oversample: the generator file (``clearface gan``) and how much of the balancing it does."""
    generator: str | None = _s(None, "generator file made by `clearface gan --run` on this run's split", "str",
                               nullable=True)
    ratio: float = _s(0.5, "share of oversample_minority's repeated minority slots filled with generated faces "
                      "(0: oversample_minority; 1: each real minority image once, the rest generated)", "float",
                      lo=0, hi=1)


@dataclass
class DistillSettings:
    """Soft training targets from a teacher's scores (``clearface predict --scores``): distillation.

    Each training image's target is ``alpha * label + (1 - alpha) * sigmoid(logit(score) / temperature)``;
    validation and held-out images keep their hard labels (tau is chosen and scored on them)."""
    scores: str | None = _s(None, "CSV name,score of the teacher on --data (`clearface predict --scores`); only "
                            "the training part's scores are used", "str", nullable=True)
    alpha: float = _s(1.0, "weight of the hard label in each training target (1: labels only, 0: teacher only); "
                      "pseudo-labelled images mix their CSV's label and score the same way", "float", lo=0, hi=1)
    temperature: float = _s(1.0, "teacher scores are tempered as sigmoid(logit(score) / T) (T > 1: softer)",
                            "float", lo=0.05, hi=100)


@dataclass
class SuspectSettings:
    """Training labels that ``clearface audit`` flags as likely wrong (confident learning on out-of-fold scores),
    and what training does with them. Only images of the training part are touched: validation and held-out
    images keep their labels, since tau is chosen and the run is scored on them."""
    file: str | None = _s(None, "suspects CSV written by `clearface audit` (name,label,score: the out-of-fold "
                          "score)", "str", nullable=True)
    action: str = _s("keep", "keep: train on them as labelled; drop: leave them out of training; soft: train on "
                     "their out-of-fold score instead of the label", "str", choices=("keep", "drop", "soft"))


PREPROCESS_STEPS = ("crop", "resize", "detect")


@dataclass
class Settings:
    """Every training setting. The defaults are the default recipe, ``configs/mobilenet_v2_96.yaml``."""
    model: str = _s("mobilenet_v2", "registry model to train (`clearface models` lists them)", "str")
    model_kwargs: dict = _s(lambda: {"pretrained": True, "input_size": 96},
                            "keyword arguments of the model (e.g. --model-kwargs.width 24)", "dict", factory=True)
    init_from: str | None = _s(None, "start from this model file's weights instead of ImageNet's (a .pt, a run "
                               "folder or `default`): fine-tuning; model and model_kwargs must build its network",
                               "str", nullable=True)
    init_split_check: bool = _s(True, "refuse an init_from model whose stored split trained on this run's validation "
                                "or held-out images (false: only for data it never saw)", "bool")
    epochs: int = _s(7, "training epochs (the schedule spans them)", "int", lo=1)
    batch_size: int = _s(128, "training batch size", "int", lo=1, hi=65536)
    lr: float = _s(1.0e-3, "peak learning rate", "float", lo=0, lo_open=True, hi=10)
    weight_decay: float = _s(0.01, "AdamW weight decay", "float", lo=0, hi=10)
    schedule: str = _s("onecycle", "learning-rate schedule", "str", choices=("onecycle", "cosine", "constant"))
    warmup_epochs: float = _s(1.0, "warm-up epochs (cosine schedule only)", "float", lo=0)
    imbalance: str = _s("pos_weight", "how the class imbalance is handled", "str",
                        choices=("pos_weight", "balanced_sampler", "undersample", "oversample_minority", "focal",
                                 "soft_hter", "none", "gan_oversample"))
    focal_gamma: float = _s(2.0, "gamma of the focal loss (imbalance: focal)", "float", lo=0, hi=100)
    soft_hter_temperature: float = _s(1.0, "temperature of the soft-HTER loss", "float", lo=0, lo_open=True)
    label_smoothing: float = _s(0.0, "label smoothing of the BCE targets", "float", lo=0, hi=1, hi_open=True)
    ema_decay: float | None = _s(None, "keep an exponential moving average of the weights with this decay per step "
                                 "(e.g. 0.999); validation, tau and the model file use it (null: off)", "float",
                                 lo=0, hi=1, lo_open=True, hi_open=True, nullable=True)
    train_sizes: list | None = _s(None, "progressive resizing: the model's input size per training epoch, e.g. "
                                  "[64,64,64,96] (the last repeats; models with input_size only); validation, "
                                  "tau and the saved model use model_kwargs.input_size", "sizes", nullable=True)
    augment: AugmentSettings = _s(lambda: AugmentSettings(lowres=0.1), "training-time augmentation "
                                  "(--augment.KEY value)", "augment", factory=True)
    gan: GanSettings = _s(GanSettings, "imbalance gan_oversample (--gan.KEY value)", "section", factory=True)
    distill: DistillSettings = _s(DistillSettings, "soft targets from a teacher's scores (--distill.KEY value)",
                                  "section", factory=True)
    suspects: SuspectSettings = _s(SuspectSettings, "labels flagged by `clearface audit` (--suspects.KEY value)",
                                   "section", factory=True)
    tta: str = _s("flip", "test-time augmentation: flip averages the image and its mirror", "str",
                  choices=("none", "flip"))
    threshold_method: str = _s("min_hter", "rule that chooses tau on validation scores (min_hter, eer, "
                               "far_at:<x>, frr_at:<x>)", "rule")
    val_fraction: float = _s(0.1, "share of the non-held-out images used for validation (chooses tau)", "float",
                             lo=0, hi=1, lo_open=True, hi_open=True)
    holdout: float = _s(10000, "images (or a fraction < 1) kept out of training and calibration", "count")
    holdout_seed: int = _s(12345, "seed choosing the held-out images (the same for every run seed)", "int", lo=0)
    track_holdout: bool = _s(True, "score the held-out part each epoch (time-to-quality curve; report only)",
                             "bool")
    folds: int = _s(1, "K > 1: K models, one per fold, ensembled; tau on out-of-fold scores", "int", lo=1, hi=100)
    seed: int = _s(0, "training seed", "int", lo=0)
    split_seed: int | None = _s(0, "seed of the train/val split (null: the training seed)", "int", lo=0,
                                nullable=True)
    early_stopping_patience: int = _s(8, "epochs without a better val HTER before stopping (0: never)", "int", lo=0)
    max_minutes: float | None = _s(None, "wall-clock training budget in minutes (the schedule still spans epochs)",
                                   "float", lo=0, lo_open=True, nullable=True)
    stop_after: int | None = _s(None, "end this invocation after N epochs (continue with --resume)", "int", lo=1,
                                nullable=True)
    checkpoint_minutes: float | None = _s(10.0, "also write checkpoints/last.ckpt mid-epoch every N minutes "
                                          "(null: after each epoch only)", "float", lo=0, lo_open=True,
                                          nullable=True)
    pseudo_data: str | None = _s(None, "unlabelled zip/folder whose teacher calls join training", "str",
                                 nullable=True)
    pseudo_labels: str | None = _s(None, "CSV name,label[,score] of those calls (`clearface pseudolabel`; or "
                                   "`predict --scores` for every image, with --distill.alpha < 1)", "str",
                                   nullable=True)
    limit_images: int | None = _s(None, "use only the first N images (smoke runs, tests)", "int", lo=1,
                                  nullable=True)
    preprocess: str = _s("crop", "how images become 64x64 RGB: crop (must already be), resize, detect (faces)",
                         "str", choices=PREPROCESS_STEPS)
    cache_dir: str | None = _s(None, "where decoded uint8 caches live (default: user cache dir)", "str",
                               nullable=True)
    num_threads: int | None = _s(None, "torch CPU threads (default: all available cores)", "int", lo=1,
                                 nullable=True)
    channels_last: bool = _s(True, "channels-last memory format (faster convolutions on CPU)", "bool")
    eval_batch_size: int = _s(512, "batch size when scoring", "int", lo=1, hi=65536)
    accelerator: str = _s("cpu", "Lightning accelerator (cpu, gpu, auto)", "str")
    devices: int | str = _s(1, "Lightning devices (a count or 'auto')", "devices")
    num_nodes: int = _s(1, "Lightning nodes", "int", lo=1)
    strategy: str = _s("auto", "Lightning strategy (auto, ddp, ...)", "str")
    precision: str = _s("32-true", "Lightning precision (32-true, bf16-mixed, ...)", "str")
    log_every_n_steps: int = _s(50, "Lightning logging interval in steps", "int", lo=1)
    progress_bar: bool = _s(True, "show the Lightning progress bar", "bool")


def setting_fields(cls=Settings):
    return dataclasses.fields(cls)


def _defaults_dict() -> dict:
    d = dataclasses.asdict(Settings())
    d["resize"] = False
    return d


DEFAULTS: dict = _defaults_dict()  # the default recipe as the plain dict that config.yaml holds
