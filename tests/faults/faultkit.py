"""Helpers of the fault suite: start a command in its own session, kill it at a random moment, look
for what it left behind (processes of its group, temporary files), compare run folders."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"train_seconds", "train_images_per_s", "val_seconds", "train_minutes_total"}


def fault_rng() -> tuple[random.Random, int]:
    """Random kill points; the seed is printed so a failure can be replayed (CLEARFACE_FAULT_SEED)."""
    seed = int(os.environ.get("CLEARFACE_FAULT_SEED") or time.time_ns() % 10**6)
    print(f"fault seed {seed} (replay with CLEARFACE_FAULT_SEED={seed})")
    return random.Random(seed), seed


def spawn(args: list, log: Path) -> subprocess.Popen:
    """``python -m clearface.cli ARGS`` (or ``python -c``) in a new session: its group id is its pid."""
    cmd = [sys.executable, *map(str, args)]
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


def wait_until(predicate, proc: subprocess.Popen | None = None, timeout: float = 300.0) -> bool:
    """True once ``predicate()`` holds; False if ``proc`` ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.05)
    raise TimeoutError("the awaited state never came")


def kill_after(proc: subprocess.Popen, delay: float, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` after ``delay`` seconds unless the process ended; True if it was sent."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        pass
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return True


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(d.name))
    return found


def no_orphans(pgid: int, timeout: float = 10.0) -> list[int]:
    """The group's processes still alive after ``timeout`` seconds (expected: none)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = group_members(pgid)
        if not left:
            return []
        time.sleep(0.1)
    left = group_members(pgid)
    for pid in left:  # do not leave them to the next test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def temp_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if ".tmp" in p.name)


def summary_rows(run: Path) -> list[dict]:
    with open(run / "summary.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def differences(a, b, path: str = "") -> list[str]:
    """Where two loaded objects (tensors compared exactly) differ."""
    import torch
    if torch.is_tensor(a) or torch.is_tensor(b):
        same = torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
        return [] if same else [path]
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k} (only one side)" for k in set(a) ^ set(b)]
        for k in sorted(set(a) & set(b), key=str):
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path} (length {len(a)} vs {len(b)})"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"[:300]]


def model_differences(a: Path, b: Path) -> list[str]:
    """Differences between two model files: their fields, then their bytes (the same run must give
    the same file, byte for byte)."""
    import torch
    x, y = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    fields = differences(x, y)
    if fields:
        return fields
    return [] if a.read_bytes() == b.read_bytes() else [f"{a} and {b}: same fields, different bytes"]
