"""Preprocessing as a named step stored in the model file (like torchvision's ``Weights.transforms``).

Steps, each turning the files of a zip/folder into the ``3 x 64 x 64`` uint8 images the model scores:

- ``crop``: the files are already 64x64 RGB face crops (the training images); anything else is an
  error naming the file. Default, and what the packaged models store.
- ``resize``: any image is squashed whole to 64x64 RGB (the old ``--resize``).
- ``detect``: photos. Each photo is opened (EXIF orientation, any mode, pixel limit checked before
  decoding), its faces are found and each is cut as the training crops are framed
  (:mod:`clearface.faces`; the framing is stored in the model file as ``preprocess.framing``).

Per-photo rule for ``detect`` (one score and one label per file, so label files stay line-aligned):
**the largest face decides**; a photo with no usable face scores 0.0 and is labelled 0 ("no clean
face found"). ``predict --faces`` lists every face.

A model file's ``preprocess.step`` chooses the step; files made before steps existed read as
``crop`` (``resize`` when their training config had ``resize: true``). ``--preprocess`` overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ClearfaceError
from .settings.fields import PREPROCESS_STEPS as STEPS  # one list of steps, kept with the settings
DEFAULT_STEP = "crop"
NO_FACE_SCORE = 0.0   # a photo without a usable face: no clean face found -> class 0
NO_FACE_GREY = 128    # what galleries show for a photo without a face
PHOTOS_PER_WORKER = 8  # below this many photos per core, a worker costs more than it saves
STREAM_CHUNK = 256     # fewest images handed from the decoding thread at once (thread handoffs cost)


def check_step(step: str, where: str = "--preprocess") -> str:
    if step not in STEPS:
        raise ClearfaceError(f"{where}: unknown preprocessing step {step!r} (choose from {', '.join(STEPS)})")
    return step


def stored_step(blob_or_info: dict) -> str:
    """The step a model file (or an engine's ``info``) asks for; old files: ``crop``/``resize`` from their config."""
    pre = blob_or_info.get("preprocess") or {}
    step = pre.get("step") if isinstance(pre, dict) else None
    if step is None:
        cfg = blob_or_info.get("config") or {}
        step = "resize" if (isinstance(cfg, dict) and (cfg.get("resize") is True or cfg.get("preprocess") == "resize")) else "crop"
    return check_step(step, f"{blob_or_info.get('path') or blob_or_info.get('model') or 'model file'}: preprocess.step")


def stored_framing(blob_or_info: dict) -> dict | None:
    pre = blob_or_info.get("preprocess") or {}
    return pre.get("framing") if isinstance(pre, dict) else None


def resolve(blob_or_info: dict, override: str | None = None) -> tuple[str, dict | None]:
    """``(step, framing)``: ``override`` (``--preprocess``) or the stored step; for ``detect`` the
    stored framing, else the measured one shipped with clearface."""
    step = check_step(override) if override else stored_step(blob_or_info)
    framing = None
    if step == "detect":
        from .faces.framing import check_framing, default_framing
        stored = stored_framing(blob_or_info)
        framing = check_framing(stored, f"{blob_or_info.get('path') or 'model file'}: preprocess.framing") \
            if stored else default_framing()
    return step, framing


def step_source(engine) -> dict:
    """The dict whose ``preprocess`` names a loaded engine's step: the torch engine's model file, or
    an ONNX export's metadata (every cached export has the step: the cache key carries the format
    version, so exports made before steps existed are never reused)."""
    blob = getattr(engine, "blob", None)
    return blob if blob is not None else engine.info


def step_record(step: str, framing: dict | None = None) -> dict:
    """What a model file's ``preprocess`` dict gains: ``step`` (and ``framing``, always the
    measured default for ``detect`` unless given, and stored for every step so that ``--preprocess
    detect`` on a crop model frames faces the way that model was trained)."""
    from .faces.framing import default_framing
    check_step(step, "preprocess")
    return {"step": step, "framing": framing or default_framing()}


def step_arg(preprocess: str | None, resize: bool = False) -> str | None:
    """``--preprocess`` with ``--resize`` as its old alias (None: the model file's step)."""
    if resize:
        if preprocess not in (None, "resize"):
            raise ClearfaceError(f"--resize contradicts --preprocess {preprocess}: give one")
        return "resize"
    return check_step(preprocess) if preprocess else None


# ---------------------------------------------------------------------------- applying a step

@dataclass
class Prepared:
    """The images of a zip/folder after a step. ``names``/``images`` are one per file (as
    :class:`clearface.data.ImageSet`); with ``detect``, ``images[i]`` is photo i's largest face
    (grey when it has none) and ``faces[i]`` all its faces."""

    names: list[str]
    images: np.ndarray
    step: str
    source: str
    has_face: np.ndarray
    faces: list[list] | None = None
    framing: dict | None = None
    face_scores: list[np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def n_faces(self) -> int:
        return int(sum(len(f) for f in self.faces)) if self.faces is not None else len(self.names)

    def score(self, score_fn, batch_size: int = 512) -> np.ndarray:
        """One score per file: the model's score (crop/resize), or the largest face's score with
        ``NO_FACE_SCORE`` for photos without a face (detect). Faces' own scores go to ``face_scores``."""
        if self.faces is None:
            return np.asarray(score_fn(self.images, batch_size=batch_size), np.float32)
        crops = [f.crop for fs in self.faces for f in fs]
        flat = (np.asarray(score_fn(np.stack(crops), batch_size=batch_size), np.float32) if crops
                else np.zeros(0, np.float32))
        counts = [len(fs) for fs in self.faces]
        self.face_scores = np.split(flat, np.cumsum(counts)[:-1]) if counts else []
        return np.array([s[0] if len(s) else NO_FACE_SCORE for s in self.face_scores], np.float32)


def prepare(data, step: str, framing: dict | None = None, cache_dir=None, use_cache: bool = False,
            workers: int | None = None, max_pixels: int | None = None, limit: int | None = None) -> Prepared:
    """Apply ``step`` to every file of ``data`` (zip or folder of numerically named images).

    ``crop``/``resize`` go through the decoded-image cache (keyed by the step) when ``use_cache``;
    ``detect`` always runs (detection depends on the framing and is not cached).
    """
    check_step(step)
    if step != "detect":
        from .data import load_images
        s = load_images(data, step=step, cache_dir=cache_dir, use_cache=use_cache, workers=workers, limit=limit)
        return Prepared(s.names, s.images, step, s.source, np.ones(len(s.names), bool))
    return detect_faces_in(data, framing, workers=workers, max_pixels=max_pixels, limit=limit)


def prepare_and_score(data, step: str, score_fn, batch_size: int = 512, framing: dict | None = None,
                      cache_dir=None, use_cache: bool = False) -> tuple[Prepared, np.ndarray]:
    """``(prepared, scores)``, as :func:`prepare` then :meth:`Prepared.score`, but faster: for
    ``crop``/``resize`` read from the files (not the cache), chunk k+1 decodes while chunk k scores
    (:mod:`clearface.data.stream`). Chunks are whole batches, so the batches, and so the scores,
    are the ones :meth:`Prepared.score` gives."""
    check_step(step)
    if step == "detect" or use_cache:  # detect scores after finding faces; the cache is decoded already
        prepared = prepare(data, step, framing, cache_dir=cache_dir, use_cache=use_cache)
        return prepared, prepared.score(score_fn, batch_size)
    from .data.ingest import listed
    from .data.stream import decode_while, prefaulted_images
    p, names = listed(data)
    images = prefaulted_images(len(names))
    batch_size = max(1, int(batch_size))
    chunk = batch_size * -(-STREAM_CHUNK // batch_size)  # whole batches; tiny batches: several a chunk
    parts = decode_while(p, names, step, images, chunk=chunk,
                         consume=lambda x: np.asarray(score_fn(x, batch_size=batch_size), np.float32))
    prepared = Prepared(names, images, step, str(p), np.ones(len(names), bool))
    return prepared, np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _faces_of(path: str, names: list[str], framing: dict, max_pixels: int) -> list[list]:
    """Open, detect and cut the faces of ``names`` in one zip/folder, one photo after another."""
    import torch

    from .data.ingest import entry_reader
    from .faces import find_faces, open_photo
    torch.set_num_threads(1)  # one photo per core beats one photo on all cores (small tensors)
    with entry_reader(path) as read:
        return [find_faces(open_photo(*read(name), max_pixels), framing) for name in names]


def detect_faces_in(data, framing: dict | None = None, workers: int | None = None,
                    max_pixels: int | None = None, limit: int | None = None) -> Prepared:
    """Open every photo of ``data``, find and cut its faces.

    Detection is mostly small tensors and Python (MTCNN's pyramid and per-box crops), so threads
    serialise on the GIL: photos are split across forked worker processes instead (the detector,
    loaded first, is shared copy-on-write), each with torch on one thread.
    """
    import torch

    from .data.ingest import listed
    from .engines import available_cores
    from .faces import DEFAULT_MAX_PIXELS, load_detector
    from .faces.framing import default_framing
    framing = framing or default_framing()
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    p, names = listed(data, limit)
    load_detector()  # a missing detector is reported before any photo is read
    n_workers = max(1, min(workers or available_cores(), len(names) // PHOTOS_PER_WORKER))
    threads = torch.get_num_threads()
    try:
        if n_workers == 1:
            faces = _faces_of(str(p), names, framing, max_pixels)
        else:
            from .data.pool import process_pool
            chunks = [list(c) for c in np.array_split(np.array(names, dtype=object), n_workers)]
            with process_pool(n_workers) as pool:
                futures = [pool.submit(_faces_of, str(p), c, framing, max_pixels) for c in chunks]
                faces = [f for fut in futures for f in fut.result()]
    finally:
        torch.set_num_threads(threads)
    images = np.full((len(names), 3, 64, 64), NO_FACE_GREY, np.uint8)
    for i, fs in enumerate(faces):
        if fs:
            images[i] = fs[0].crop
    return Prepared(names, images, "detect", str(p), np.array([bool(f) for f in faces]), faces, framing)


def faces_csv(prepared: Prepared, threshold: float) -> str:
    """``--faces``: one row per face (image, face index, box, detector confidence, score, label); a
    photo with no face gets one row with face ``no_face``, score 0 and label 0 (the per-photo rule)."""
    from .calibration import labels_from_scores
    if prepared.faces is None or prepared.face_scores is None:
        raise ClearfaceError("--faces needs --preprocess detect (and scored photos)")
    rows = ["image,face,x0,y0,x1,y1,confidence,score,label"]
    for name, fs, sc in zip(prepared.names, prepared.faces, prepared.face_scores):
        if not fs:
            rows.append(f"{name},no_face,,,,,,{NO_FACE_SCORE:.6f},0")
            continue
        labels = labels_from_scores(sc, threshold)
        for k, (f, s, lab) in enumerate(zip(fs, sc, labels)):
            x0, y0, x1, y1 = f.box
            rows.append(f"{name},{k},{x0:.1f},{y0:.1f},{x1:.1f},{y1:.1f},{f.confidence:.4f},{s:.6f},{int(lab)}")
    return "\n".join(rows) + "\n"
