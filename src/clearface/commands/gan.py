"""``clearface gan``: train the class-conditional GAN on a run's training part (for imbalance gan_oversample)."""

from __future__ import annotations

from ..errors import ClearfaceError
from ..outputs import check_output_dir
from .checks import _data_dirs, _emit, _inputs, _preprocess


def cmd_gan(args, extra) -> int:
    inputs = _inputs(args, "data", "labels", "run")
    out = check_output_dir(args.out, inputs, "--out", _data_dirs(args))
    from ..rundir import RunDir
    if not RunDir(args.run).split_path.is_file():
        raise ClearfaceError(f"--run {args.run}: no split.csv (give a training run folder, or write its split first)")
    from ..gan.run import train_gan
    path = train_gan(args.run, args.data, args.labels, out, epochs=args.epochs, batch_size=args.batch_size,
                     z_dim=args.z_dim, ngf=args.ngf, lr=args.lr, seed=args.seed, num_threads=args.num_threads,
                     max_minutes=args.max_minutes, resume=args.resume, cache_dir=args.cache_dir,
                     preprocess=_preprocess(args))
    from ..gan.sampling import load_generator_file
    blob = load_generator_file(path)
    result = {"generator": str(path), "epochs_done": blob["epochs_done"], "generates": blob["generates"],
              "trained_on_images": blob["trained_on"]["n_images"]}
    _emit(args, result, f"wrote {path}: class-{blob['generates']} generator, {blob['epochs_done']} epochs on "
          f"{blob['trained_on']['n_images']} training images of {args.run}")
    return 0
