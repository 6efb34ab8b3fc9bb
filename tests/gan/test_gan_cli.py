"""`clearface gan` and `train --imbalance gan_oversample` from the command line."""

from __future__ import annotations

from clearface.cli import main


def test_gan_oversample_without_generator_is_one_line_exit_2(real_small, tmp_path, capsys):
    zpath, lpath, _ = real_small
    code = main(["train", "--data", str(zpath), "--labels", str(lpath), "--out", str(tmp_path / "run"),
                 "--imbalance", "gan_oversample"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "needs a generator file: give --gan.generator" in err
    assert not (tmp_path / "run").exists()  # refused before any work


def test_gan_command_writes_a_generator_for_the_runs_split(small_run, tmp_path, capsys):
    zpath, lpath, run, *_ = small_run
    code = main(["gan", "--run", str(run), "--data", str(zpath), "--labels", str(lpath), "--out", str(tmp_path / "g"),
                 "--epochs", "1", "--ngf", "4", "--z-dim", "8", "--batch-size", "16", "--json"])
    assert code == 0
    assert '"generates": 0' in capsys.readouterr().out
    assert (tmp_path / "g" / "generator.pt").is_file()


def test_gan_command_needs_a_run_with_a_split(real_small, tmp_path, capsys):
    zpath, lpath, _ = real_small
    (tmp_path / "empty").mkdir()
    code = main(["gan", "--run", str(tmp_path / "empty"), "--data", str(zpath), "--labels", str(lpath),
                 "--out", str(tmp_path / "g")])
    assert code == 2 and "no split.csv" in capsys.readouterr().err


def _train_args(zpath, lpath, out, generator, split_seed):
    # the split of conftest's small_run (30 % val, 80 held out, seed 0) when split_seed is 0
    return ["train", "--data", str(zpath), "--labels", str(lpath), "--out", str(out), "--model", "cfnet_tiny",
            "--epochs", "1", "--batch-size", "32", "--holdout", "80", "--val-fraction", "0.3", "--seed", "0",
            "--split-seed", str(split_seed), "--tta", "none", "--num-threads", "1", "--track-holdout", "false",
            "--progress-bar", "false", "--imbalance", "gan_oversample", "--gan.generator", str(generator),
            "--gan.ratio", "1"]


def test_gan_oversample_trains_on_its_own_split_and_refuses_another(small_run, tmp_path, capsys):
    zpath, lpath, run, *_ = small_run
    assert main(["gan", "--run", str(run), "--data", str(zpath), "--labels", str(lpath), "--out", str(tmp_path / "g"),
                 "--epochs", "1", "--ngf", "4", "--z-dim", "8", "--batch-size", "16"]) == 0
    generator = tmp_path / "g" / "generator.pt"
    assert main(_train_args(zpath, lpath, tmp_path / "ok", generator, 0)) == 0
    assert (tmp_path / "ok" / "model.pt").is_file()
    capsys.readouterr()
    # another split: some images the generator saw are now validation/held-out ones
    assert main(_train_args(zpath, lpath, tmp_path / "leak", generator, 1)) == 2
    assert "this run's validation/held-out images" in capsys.readouterr().err
