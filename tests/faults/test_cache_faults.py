"""Signals during a parallel cache build: no decode worker outlives its parent, no temp file outlives
the next start, and the rebuilt cache holds exactly the decoded pixels."""

import signal
import time

import numpy as np
import pytest

from conftest import real_slice, write_zip
from faultkit import fault_rng, group_members, kill_after, no_orphans, spawn, temp_files, wait_until

# Two decode workers (one per 8,000 images); with simplejpeg's decoding, 16,000 images keep the
# build at about a second, so the signal lands while the workers decode.
N_IMAGES = 16000


def _build(zpath, cache):
    code = ("import sys; from clearface.data import load_images; "
            f"s = load_images({str(zpath)!r}, cache_dir={str(cache)!r}, workers=2); print(len(s.names))")
    return ["-c", code]


@pytest.fixture(scope="module")
def faces_zip(tmp_path_factory):
    from clearface.data import load_images
    d = tmp_path_factory.mktemp("cache_faults")
    blobs, _ = real_slice(N_IMAGES)
    zpath = write_zip(d / "faces.zip", blobs, "train_img")
    return zpath, load_images(zpath, use_cache=False, workers=1).images


def _decoding(cache):
    return lambda: any(p.name.endswith(".npy") for p in temp_files(cache)) if cache.exists() else False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=["kill9-a", "kill9-b", "term", "int"])
def test_signal_during_cache_build_leaves_no_worker_and_a_valid_cache(faces_zip, tmp_path, sig):
    from clearface.data import load_images
    zpath, expected = faces_zip
    cache = tmp_path / "cache"
    rng, seed = fault_rng()
    p = spawn(_build(zpath, cache), tmp_path / "build.log")
    assert wait_until(_decoding(cache), p), (tmp_path / "build.log").read_text()[-2000:]
    time.sleep(0.2)  # let the workers start
    assert len(group_members(p.pid)) >= 2  # the parent and its workers
    sent = kill_after(p, rng.uniform(0, 0.4), sig)  # the build takes about a second or more
    assert no_orphans(p.pid) == [], f"decode workers outlived their parent (seed {seed})"
    if sent and sig == signal.SIGKILL:
        assert p.returncode == -signal.SIGKILL
    # (SIGINT/SIGTERM landing after the build, e.g. during interpreter exit, may still end in exit 0)
    s = load_images(zpath, cache_dir=cache)  # the next start: sweeps, rebuilds or reuses
    assert np.array_equal(s.images, expected)
    assert temp_files(cache) == []
    print(f"cache: signal {sig.name} {'sent' if sent else 'not needed'} (seed {seed}); no orphans, cache valid")
