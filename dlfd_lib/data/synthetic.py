"""Synthetic faces: a small, fully known stand-in for the paper's face benchmarks.

``make_synthetic_splits`` draws cartoon RGB faces procedurally and returns the same
:class:`~dlfd_lib.data.splits.UnlearningSplits` object as the real datasets: identity-disjoint
train / val / test people, a forget set made of whole training people (like MUFAC), and the
ground truth of every image (who it is and its task label).

Design – what carries what
--------------------------
**Identity** (drawn once per person, never changes): face shape (width, forehead and chin
height, jaw taper), skin tone, hair colour, hair style (fringe height, parting, volume, length
at the sides, hair texture, tendency to go bald), eye spacing, eye size, iris colour, nose
length and width, mouth width and lip colour, brow thickness, a mole, and accessories
(glasses of a given shape and colour, earrings, beard / moustache). This is what a network can
memorise about the people it was trained on.

**The label** lives in graded cues that are drawn per image.

* ``task="age"`` (8 ordered classes a-h, as in MUFAC): each person has a base age class and
  each photo's class lies within ``label_spread`` classes of it ("family photos at different
  ages"). The photo's *cue age* (a real number on the class scale) drives child proportions
  (big eyes, low eye line / large forehead, small nose and mouth, round jaw, rosy cheeks,
  light brows), then wrinkles (forehead, crow's feet, nasolabial folds), greying hair and
  brows, baldness for the bald-prone, beards only from adulthood, thinner lips, sagging jaw,
  eye bags and age spots, each ramping in over its own range of ages.
* ``task="emotion"`` (7 classes in RAF-DB order): each person shows ``emotions_per_id``
  emotions. Each emotion is a prototype vector over seven facial cues (mouth curvature,
  mouth opening, mouth width, one-sided upper-lip raise, brow height, inner-brow angle, eye
  opening) – e.g. surprise = raised brows, wide eyes, round open mouth.

**Ambiguity lives at the person level.** Every person has a fixed offset on the cues: for age
they look ``N(0, identity_offset_sd)`` classes older or younger than they are; for emotion they
have a resting face (a bias on every cue, ``N(0, 0.35 * identity_offset_sd)``) and an
expressiveness (``1 + 0.6 * identity_offset_sd * N(0, 1)``, clipped to 0.4..1.8) that scales
their expressions. Per image the cues only move by ``image_cue_sd``.
A network can therefore learn each training person's offset (it memorises the people it saw,
which is what makes membership inference work), while unseen people are genuinely harder.
Independent noise on every image instead blocks memorisation altogether.

**Nuisances** are drawn per image and carry no label or identity: pose (rotation, shift, scale,
a yaw-like squash with the inner features sliding sideways), gaze, lighting (brightness,
contrast, a light gradient, a colour cast), the background (random colours, gradient and one
of several textures), the clothes, and pixel noise. Backgrounds and clothes are deliberately
*not* tied to a person: a per-person background lets a model map background -> person ->
label and shortcut the task.

Calibration (the paper's ResNet18 + MLP head trained from scratch at 64 px, SGD lr 0.01, cosine,
the paper's augmentation, default knobs and sizes, one NVIDIA H100): age, 60 epochs -> train
0.95, test 0.64, loss-MIA forget-vs-test 0.68 (MUFAC's original model: test 0.63, MIA 0.69);
emotion, 100 epochs -> train 0.97, test 0.58, MIA 0.70. ``identity_offset_sd`` is the main
dial: at 0.45 the age test accuracy fell to 0.54-0.58 with MIA 0.70-0.72, at 0.3 it rose to 0.64.

Rendering draws every shape as an anti-aliased soft mask (about one pixel wide edges) on a
coordinate grid, for a whole batch of images at once (torch, float32), painting back to
front. All randomness comes from one ``numpy.random.Generator(seed)``, drawn in a fixed order
before rendering, so a seed gives bitwise identical images on a given machine and torch build.
Generated arrays are cached (``.npz``, keyed by a hash of every parameter) so a second call
with the same parameters loads in a fraction of a second; cached and fresh results are equal.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..utils import atomic_write_bytes
from .splits import (IMAGENET_MEAN, IMAGENET_STD, SplitDataset, TensorSource, UnlearningSplits,
                     eval_transform)

__all__ = ["make_synthetic_splits", "AGE_CLASSES", "EMOTION_CLASSES", "TASKS", "DEFAULT_KNOBS",
           "default_cache_dir"]

#: bump whenever the drawing changes, so that old cache files are not reused
GENERATOR_VERSION = 1

AGE_CLASSES = ["a (0-6)", "b (7-12)", "c (13-19)", "d (20-30)", "e (31-45)", "f (46-55)",
               "g (56-66)", "h (67-80)"]
EMOTION_CLASSES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
TASKS = {"age": AGE_CLASSES, "emotion": EMOTION_CLASSES}

#: difficulty knobs of the generator (keyword arguments of ``make_synthetic_splits``)
DEFAULT_KNOBS = {
    "identity_offset_sd": 0.35,  # person-level cue offset (age: classes; emotion: cue units)
    "image_cue_sd": 0.12,        # per-image jitter of the cues (same units)
    "label_spread": 2,           # age: a person's photos lie within +-label_spread classes
    "emotions_per_id": 4,        # emotion: how many different emotions each person shows
    "noise_sd": 0.03,            # pixel noise (image range 0..1)
    "pose_sd": 1.0,              # scales rotation / shift / scale / yaw variation
    "light_sd": 1.0,             # scales brightness / contrast / gradient / colour cast
    "id_size_spread": 0.25,      # images per person: imgs_per_id * U(1 - s, 1 + s)
    "glasses_p": 0.25,           # share of people wearing glasses
}

MIN_SIZE, MAX_SIZE = 16, 128

# emotion prototypes over the cues
# (mouth curve, mouth open, mouth width, upper-lip raise, brow raise, inner-brow angle, eye open)
_CUES = ("curve", "open", "width", "lip_raise", "brow_raise", "brow_angle", "eye_open")
_EMOTION_PROTOTYPES = np.array([
    [0.00, 1.00, -0.45, 0.00, 1.00, 0.10, 0.90],    # surprise: O-mouth, raised brows, wide eyes
    [-0.30, 0.45, 0.60, 0.00, 0.70, 0.80, 0.80],    # fear: stretched mouth, brows up and in
    [-0.35, 0.15, 0.00, 1.00, -0.50, -0.30, -0.60],  # disgust: one-sided lip raise, narrow eyes
    [1.00, 0.40, 0.35, 0.00, 0.10, 0.00, -0.35],    # happiness: smile, teeth, smiling eyes
    [-0.90, 0.00, -0.10, 0.00, 0.05, 0.90, -0.30],  # sadness: mouth down, inner brows up
    [-0.30, 0.05, -0.25, 0.00, -0.70, -1.00, 0.15],  # anger: brows down and in, pressed mouth
    [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],     # neutral
], dtype=np.float64)

_SKIN_ANCHORS = np.array([[0.98, 0.85, 0.75], [0.93, 0.75, 0.62], [0.80, 0.59, 0.44],
                          [0.60, 0.42, 0.30], [0.40, 0.27, 0.19]])
_HAIR_COLOURS = np.array([[0.07, 0.06, 0.06], [0.22, 0.14, 0.09], [0.42, 0.28, 0.17],
                          [0.52, 0.24, 0.12], [0.86, 0.73, 0.47], [0.74, 0.40, 0.17]])
_HAIR_P = np.array([0.30, 0.25, 0.20, 0.08, 0.12, 0.05])
_IRIS_COLOURS = np.array([[0.30, 0.18, 0.09], [0.13, 0.09, 0.06], [0.30, 0.45, 0.65],
                          [0.33, 0.45, 0.28], [0.45, 0.35, 0.18]])
_IRIS_P = np.array([0.35, 0.30, 0.15, 0.10, 0.10])
_FRAME_COLOURS = np.array([[0.05, 0.05, 0.05], [0.35, 0.20, 0.10], [0.80, 0.65, 0.25],
                           [0.70, 0.70, 0.72], [0.60, 0.10, 0.12], [0.10, 0.20, 0.55]])
_GREY_HAIR = np.array([0.86, 0.86, 0.84])
_CHUNK_PIXELS = 1 << 17  # pixels rendered at once: small enough to stay in the CPU caches


# ============================================================================================
# public API
# ============================================================================================
def default_cache_dir() -> Path:
    """``$DLFD_CACHE/synthetic`` if the variable is set, else ``~/.cache/dlfd_kit/synthetic``."""
    root = os.environ.get("DLFD_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "dlfd_kit") / "synthetic"


def make_synthetic_splits(task: str = "age", image_size: int = 64, n_train_ids: int = 150,
                          imgs_per_id: int = 16, n_val_ids: int = 40, n_test_ids: int = 40,
                          forget_frac: float = 0.15, seed: int = 0,
                          cache_dir: str | Path | bool | None = None,
                          **knobs) -> UnlearningSplits:
    """Draw a synthetic face dataset and split it for unlearning.

    Parameters
    ----------
    task : ``"age"`` (8 ordered MUFAC-style classes) or ``"emotion"`` (7 RAF-DB classes).
    image_size : side of the square images, 16..128 pixels.
    n_train_ids, n_val_ids, n_test_ids : number of distinct people in each split.
    imgs_per_id : mean number of photos per person (varies by ``id_size_spread``).
    forget_frac : share of the training images to forget; whole training people are picked at
        random (with the seed) until their images come closest to this share.
    seed : everything is determined by it.
    cache_dir : folder for the cache file; ``None`` -> :func:`default_cache_dir`,
        ``False`` -> no caching.
    **knobs : difficulty knobs, see :data:`DEFAULT_KNOBS`.

    Returns
    -------
    UnlearningSplits with ``name="synthetic"``; every split carries ``identities``;
    ``info`` holds every generator parameter and ``forget_identities``.
    """
    params = _check_params(task, image_size, n_train_ids, imgs_per_id, n_val_ids, n_test_ids,
                           forget_frac, seed, knobs)
    arrays = None
    path = _cache_path(params, cache_dir)
    if path is not None and path.exists():
        arrays = _load_cache(path, params["image_size"])
    if arrays is None:
        arrays = _generate(params)
        if path is not None:
            _save_cache(path, arrays)
    return _build_splits(params, arrays)


# ============================================================================================
# parameters and caching
# ============================================================================================
def _check_params(task, image_size, n_train_ids, imgs_per_id, n_val_ids, n_test_ids,
                  forget_frac, seed, knobs) -> dict:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; the synthetic faces support {sorted(TASKS)}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
            or not MIN_SIZE <= image_size <= MAX_SIZE:
        raise ValueError(f"image_size must be an integer from {MIN_SIZE} to {MAX_SIZE} pixels; "
                         f"got {image_size!r}")
    for name, value, low in (("n_train_ids", n_train_ids, 2), ("n_val_ids", n_val_ids, 1),
                             ("n_test_ids", n_test_ids, 1), ("imgs_per_id", imgs_per_id, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    if not 0.0 < float(forget_frac) < 1.0:
        raise ValueError(f"forget_frac must lie strictly between 0 and 1; got {forget_frac!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    unknown = sorted(set(knobs) - set(DEFAULT_KNOBS))
    if unknown:
        raise TypeError(f"unknown generator knob(s) {unknown}; valid knobs are "
                        f"{sorted(DEFAULT_KNOBS)}")
    merged = {**DEFAULT_KNOBS, **knobs}
    for name in ("identity_offset_sd", "image_cue_sd", "noise_sd", "pose_sd", "light_sd"):
        if float(merged[name]) < 0:
            raise ValueError(f"{name} must be >= 0; got {merged[name]!r}")
    if not 0 <= float(merged["id_size_spread"]) < 1:
        raise ValueError(f"id_size_spread must lie in [0, 1); got {merged['id_size_spread']!r}")
    if not 0 <= float(merged["glasses_p"]) <= 1:
        raise ValueError(f"glasses_p must lie in [0, 1]; got {merged['glasses_p']!r}")
    spread = merged["label_spread"]
    if int(spread) != spread or not 0 <= spread <= 7:
        raise ValueError(f"label_spread must be an integer from 0 to 7; got {spread!r}")
    n_emo = merged["emotions_per_id"]
    if int(n_emo) != n_emo or not 1 <= n_emo <= len(EMOTION_CLASSES):
        raise ValueError(f"emotions_per_id must be an integer from 1 to {len(EMOTION_CLASSES)}; "
                         f"got {n_emo!r}")
    params = {"task": task, "image_size": int(image_size), "n_train_ids": int(n_train_ids),
              "imgs_per_id": int(imgs_per_id), "n_val_ids": int(n_val_ids),
              "n_test_ids": int(n_test_ids), "forget_frac": float(forget_frac), "seed": int(seed)}
    for name, value in merged.items():
        params[name] = int(value) if name in ("label_spread", "emotions_per_id") else float(value)
    return params


def _cache_path(params: dict, cache_dir) -> Path | None:
    if cache_dir is False:
        return None
    folder = default_cache_dir() if cache_dir is None or cache_dir is True else Path(cache_dir)
    key = json.dumps({"version": GENERATOR_VERSION, **params}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return folder / f"synthetic_{params['task']}_{params['image_size']}px_{digest}.npz"


_ARRAY_KEYS = ("images", "labels", "identities", "split", "forget_identities")


def _load_cache(path: Path, size: int) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in _ARRAY_KEYS}
        n = len(arrays["labels"])
        if arrays["images"].shape != (n, 3, size, size) or arrays["images"].dtype != np.uint8 \
                or len(arrays["identities"]) != n or len(arrays["split"]) != n:
            raise ValueError("arrays of unexpected shape")
        return arrays
    except Exception as exc:  # a damaged or foreign file: regenerate and overwrite
        warnings.warn(f"ignoring unreadable synthetic-data cache {path} ({exc}); regenerating",
                      stacklevel=3)
        return None


def _save_cache(path: Path, arrays: dict) -> None:
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: arrays[k] for k in _ARRAY_KEYS})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # temporary files are private; a cache need not be
    try:
        atomic_write_bytes(path, write)
    except OSError as exc:  # a read-only home or a full disk must not stop an experiment
        warnings.warn(f"could not write the synthetic-data cache {path} ({exc}); continuing "
                      f"without it (pass cache_dir=False to silence this)", stacklevel=3)


# ============================================================================================
# assembling the splits
# ============================================================================================
_SPLIT_CODES = {"retain": 0, "forget": 1, "val": 2, "test": 3}


def _build_splits(params: dict, arrays: dict) -> UnlearningSplits:
    size = params["image_size"]
    transform = eval_transform(size, IMAGENET_MEAN, IMAGENET_STD)
    images = torch.from_numpy(arrays["images"])
    parts = {}
    for name, code in _SPLIT_CODES.items():
        idx = np.flatnonzero(arrays["split"] == code)
        parts[name] = SplitDataset(TensorSource(images[torch.from_numpy(idx)]),
                                   arrays["labels"][idx].astype(np.int64), transform,
                                   identities=arrays["identities"][idx].astype(np.int64))
    info = dict(params)
    info["generator_version"] = GENERATOR_VERSION
    info["forget_identities"] = [int(i) for i in arrays["forget_identities"]]
    return UnlearningSplits(name="synthetic", task=params["task"],
                            class_names=list(TASKS[params["task"]]), image_size=size,
                            mean=IMAGENET_MEAN, std=IMAGENET_STD, info=info, **parts)


# ============================================================================================
# drawing people, labels and per-image parameters
# ============================================================================================
def _generate(params: dict) -> dict:
    rng = np.random.default_rng(params["seed"])
    n_ids = params["n_train_ids"] + params["n_val_ids"] + params["n_test_ids"]
    people = _draw_people(rng, n_ids, params)

    spread = params["id_size_spread"]
    counts = np.rint(params["imgs_per_id"] * rng.uniform(1 - spread, 1 + spread, n_ids))
    counts = np.maximum(counts.astype(np.int64), 2)
    owner = np.repeat(np.arange(n_ids), counts)
    labels = _draw_labels(rng, people, owner, params)
    img = _draw_image_params(rng, people, owner, labels, params)
    noise_seed = int(rng.integers(2**62))

    # splits: people 0..n_train-1 train, then val, then test; forget = whole train people
    n_tr, n_va = params["n_train_ids"], params["n_val_ids"]
    forget_ids = _pick_forget_ids(rng, counts[:n_tr], params["forget_frac"])
    split = np.where(owner < n_tr, 0, np.where(owner < n_tr + n_va, 2, 3))
    split[np.isin(owner, forget_ids)] = 1
    order = rng.permutation(len(owner))  # shuffle so that no split is grouped by person

    images = _render_all(img, params["image_size"], params["noise_sd"], noise_seed)
    return {"images": images[order], "labels": labels[order].astype(np.int64),
            "identities": owner[order].astype(np.int64), "split": split[order].astype(np.int8),
            "forget_identities": np.sort(forget_ids).astype(np.int64)}


def _pick_forget_ids(rng, train_counts: np.ndarray, frac: float) -> np.ndarray:
    """Whole people, in a seeded random order, until their images are closest to ``frac``."""
    perm = rng.permutation(len(train_counts))
    cum = np.cumsum(train_counts[perm])
    target = frac * train_counts.sum()
    k = int(np.argmin(np.abs(cum - target))) + 1
    k = min(max(k, 1), len(train_counts) - 1)  # at least one forgotten and one kept person
    return perm[:k]


def _mix(rng, anchors, probs, n, jitter):
    choice = rng.choice(len(anchors), size=n, p=probs)
    return np.clip(anchors[choice] + rng.normal(0, jitter, (n, 3)), 0, 1)


def _draw_people(rng, n: int, params: dict) -> dict:
    """Everything that is fixed for a person."""
    p = {}
    p["female"] = rng.random(n) < 0.5
    fem = p["female"]
    # face shape
    p["face_w"] = rng.uniform(0.36, 0.44, n)
    p["face_top"] = rng.uniform(0.50, 0.57, n)
    p["face_low"] = rng.uniform(0.50, 0.60, n)
    p["jaw"] = rng.uniform(0.05, 0.35, n)
    # colours
    t = rng.uniform(0, len(_SKIN_ANCHORS) - 1, n)
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, len(_SKIN_ANCHORS) - 1)
    w = (t - lo)[:, None]
    p["skin"] = np.clip(_SKIN_ANCHORS[lo] * (1 - w) + _SKIN_ANCHORS[hi] * w
                        + rng.normal(0, 0.02, (n, 3)), 0, 1)
    p["hair_col"] = _mix(rng, _HAIR_COLOURS, _HAIR_P, n, 0.03)
    p["iris_col"] = _mix(rng, _IRIS_COLOURS, _IRIS_P, n, 0.03)
    lip_mix = np.where(fem & (rng.random(n) < 0.3), 0.75, rng.uniform(0.3, 0.5, n))
    p["lip_col"] = np.clip(p["skin"] * (1 - lip_mix[:, None])
                           + np.array([0.72, 0.22, 0.25]) * lip_mix[:, None], 0, 1) * 0.92
    # hair style
    p["fringe"] = rng.uniform(0.10, 0.36, n)           # how far the hair comes down the forehead
    p["part"] = rng.normal(0, 0.18, n)                 # tilt of the hairline (side parting)
    p["volume"] = rng.uniform(0.02, 0.12, n)
    p["temple"] = rng.uniform(0.0, 0.35, n)            # hair coming down at the temples
    p["hair_len"] = np.where(fem, rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.2, n))
    p["bald_prone"] = np.where(~fem & (rng.random(n) < 0.4), rng.uniform(0.5, 1.0, n), 0.0)
    p["hair_freq"] = rng.uniform(30, 70, n)            # strands across the hair
    p["hair_ang"] = rng.uniform(-0.4, 0.4, n)
    p["hair_tex"] = rng.uniform(0.03, 0.09, n)
    # features
    p["eye_sep"] = rng.uniform(0.135, 0.175, n)
    p["eye_w"] = rng.uniform(0.058, 0.074, n)
    p["eye_h"] = rng.uniform(0.45, 0.62, n)            # height / width of the open eye
    p["eye_y"] = rng.uniform(-0.07, -0.02, n)
    p["nose_len"] = rng.uniform(0.16, 0.23, n)
    p["nose_w"] = rng.uniform(0.045, 0.075, n)
    p["mouth_w"] = rng.uniform(0.11, 0.16, n)
    p["lip_t"] = rng.uniform(0.014, 0.026, n)
    p["brow_t"] = np.where(fem, rng.uniform(0.010, 0.018, n), rng.uniform(0.015, 0.026, n))
    p["brow_arch"] = rng.uniform(0.0, 0.03, n)
    p["brow_gap"] = rng.uniform(0.045, 0.07, n)
    p["mole"] = rng.random(n) < 0.35
    p["mole_x"] = rng.choice([-1, 1], n) * rng.uniform(0.12, 0.28, n)
    p["mole_y"] = rng.uniform(0.0, 0.3, n)
    # accessories
    p["glasses"] = rng.random(n) < params["glasses_p"]
    p["frame_col"] = _FRAME_COLOURS[rng.integers(0, len(_FRAME_COLOURS), n)]
    p["frame_t"] = rng.uniform(0.010, 0.020, n)
    p["frame_r"] = rng.uniform(1.45, 1.8, n)           # lens radius in eye widths
    p["frame_sq"] = rng.uniform(2.0, 5.0, n)           # 2 round .. 5 rectangular
    p["tint"] = np.where(rng.random(n) < 0.15, rng.uniform(0.2, 0.5, n), 0.0)
    p["earring"] = rng.random(n) < np.where(fem, 0.45, 0.05)
    p["earring_col"] = np.where((rng.random(n) < 0.5)[:, None], [[0.85, 0.70, 0.25]],
                                [[0.80, 0.80, 0.85]])
    p["beard"] = np.where(~fem & (rng.random(n) < 0.3), rng.uniform(0.5, 1.0, n), 0.0)
    p["moustache"] = np.where(~fem & (rng.random(n) < 0.3), rng.uniform(0.6, 1.0, n), 0.0)
    p["spots_x"] = rng.uniform(-0.3, 0.3, (n, 3))
    p["spots_y"] = rng.uniform(-0.35, 0.25, (n, 3))
    # the label-related, person-level part
    sd = params["identity_offset_sd"]
    p["age_offset"] = rng.normal(0, sd, n)             # looks older (+) / younger (-) than is
    p["expressive"] = np.clip(1 + 0.6 * sd * rng.normal(0, 1, n), 0.4, 1.8)
    p["resting"] = 0.35 * sd * rng.normal(0, 1, (n, len(_CUES)))
    # base class: the end classes get a little more people because label_spread cannot
    # push photos past them
    base_p = np.ones(8)
    base_p[[0, -1]] += 0.15
    base_p[[1, -2]] += 0.05
    p["base_age"] = rng.choice(8, size=n, p=base_p / base_p.sum())
    p["emotions"] = np.stack([rng.permutation(len(EMOTION_CLASSES))[:params["emotions_per_id"]]
                              for _ in range(n)])
    return p


def _draw_labels(rng, people: dict, owner: np.ndarray, params: dict) -> np.ndarray:
    n = len(owner)
    if params["task"] == "age":
        spread = params["label_spread"]
        deltas = np.arange(-spread, spread + 1)
        weight = 1.0 / (1.0 + np.abs(deltas))
        base = people["base_age"][owner]
        cand = base[:, None] + deltas[None, :]
        w = np.where((cand >= 0) & (cand <= 7), weight[None, :], 0.0)
        w /= w.sum(1, keepdims=True)
        pick = (rng.random(n)[:, None] > np.cumsum(w, 1)).sum(1)
        return cand[np.arange(n), np.minimum(pick, len(deltas) - 1)]
    choice = rng.integers(0, params["emotions_per_id"], n)
    return people["emotions"][owner, choice]


def _draw_image_params(rng, p: dict, owner: np.ndarray, labels: np.ndarray, params: dict) -> dict:
    """Per-image numbers: the person's constants, the label cues and the nuisances."""
    n = len(owner)
    cue_sd = params["image_cue_sd"]
    img = {k: v[owner] for k, v in p.items() if k not in ("emotions",)}
    # ---- the label cues ---------------------------------------------------------------------
    if params["task"] == "age":
        age = labels + p["age_offset"][owner] + rng.normal(0, cue_sd, n)
        # a photo's expression is a nuisance here: mostly neutral to smiling
        cues = np.zeros((n, len(_CUES)))
        cues[:, 0] = rng.uniform(-0.15, 0.7, n)
        cues[:, 1] = 0.3 * rng.random(n) ** 2
        cues[:, 2:] = rng.normal(0, 0.1, (n, len(_CUES) - 2))
    else:
        age = p["base_age"][owner] + p["age_offset"][owner] + rng.normal(0, 0.1, n)
        proto = _EMOTION_PROTOTYPES[labels]
        cues = (p["resting"][owner] + p["expressive"][owner, None] * proto
                + rng.normal(0, cue_sd, (n, len(_CUES))))
    img["age"] = age
    for j, name in enumerate(_CUES):
        img[name] = cues[:, j]
    # ---- nuisances --------------------------------------------------------------------------
    ps, ls = params["pose_sd"], params["light_sd"]
    img["rot"] = rng.normal(0, math.radians(6) * ps, n)
    img["tx"] = rng.normal(0, 0.05 * ps, n)
    img["ty"] = rng.normal(0.06, 0.04 * ps, n)
    img["scale"] = 1.12 * np.exp(rng.normal(0, 0.06 * ps, n))
    img["yaw"] = np.clip(rng.normal(0, 0.35 * ps, n), -0.9, 0.9)
    img["gaze_x"] = rng.normal(0, 0.15, n)
    img["gaze_y"] = rng.normal(0, 0.1, n)
    img["hair_jit"] = rng.normal(0, 0.01, n)
    img["bright"] = np.exp(rng.normal(0, 0.12 * ls, n))
    img["contrast"] = np.exp(rng.normal(0, 0.12 * ls, n))
    img["grad"] = np.abs(rng.normal(0, 0.15 * ls, n))
    img["grad_dir"] = rng.uniform(0, 2 * np.pi, n)
    img["cast"] = rng.normal(0, 0.03 * ls, (n, 3))
    # background: two colours, a gradient and one texture, all per image
    colour = rng.uniform(0.05, 0.95, (n, 3))
    mute = rng.uniform(0.0, 0.8, (n, 1))               # from vivid to nearly grey
    img["bg1"] = colour * (1 - mute) + colour.mean(1, keepdims=True) * mute
    img["bg2"] = np.clip(img["bg1"] + rng.normal(0, 0.2, (n, 3)), 0, 1)
    img["bg_dir"] = rng.uniform(0, 2 * np.pi, n)
    kind = rng.integers(0, 4, n)  # 0 plain gradient, 1 stripes, 2 blotches, 3 split wall
    img["bg_stripe"] = np.where(kind == 1, rng.uniform(0.05, 0.15, n), 0.0)
    img["bg_blotch"] = np.where(kind == 2, rng.uniform(0.08, 0.2, n), 0.0)
    img["bg_split"] = np.where(kind == 3, 1.0, 0.0)
    img["bg_freq"] = rng.uniform(4, 14, (n, 3))
    img["bg_ang"] = rng.uniform(0, 2 * np.pi, (n, 3))
    img["bg_phase"] = rng.uniform(0, 2 * np.pi, (n, 3))
    img["split_pos"] = rng.uniform(-0.6, 0.6, n)
    img["cloth"] = rng.uniform(0.05, 0.9, (n, 3))
    img["cloth_w"] = rng.uniform(0.75, 1.0, n)
    return img


# ============================================================================================
# rendering
# ============================================================================================
def _render_all(img: dict, size: int, noise_sd: float, noise_seed: int) -> np.ndarray:
    # The chunks are small, so extra intra-op threads gain little and, on a busy machine,
    # oversubscription made rendering ten times slower: render on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _render_chunks(img, size, noise_sd, noise_seed)
    finally:
        torch.set_num_threads(threads)


def _render_chunks(img: dict, size: int, noise_sd: float, noise_seed: int) -> np.ndarray:
    n = len(img["age"])
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    noise_rng = np.random.default_rng(noise_seed)
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        batch = {k: torch.as_tensor(np.asarray(v[start:stop], dtype=np.float32))
                 for k, v in img.items()}
        pic = _render(batch, size)
        if noise_sd > 0:
            noise = noise_rng.standard_normal(pic.shape, dtype=np.float32)
            pic += torch.from_numpy(noise) * noise_sd
        out[start:stop] = (pic.clamp_(0, 1) * 255).round_().to(torch.uint8).numpy()
    return out


def _col(t: torch.Tensor) -> torch.Tensor:
    """(n, 3) colour -> (n, 3, 1, 1) for broadcasting over pixels."""
    return t[:, :, None, None]


def _v(t: torch.Tensor) -> torch.Tensor:
    """(n,) parameter -> (n, 1, 1) for broadcasting over pixels."""
    return t[:, None, None]


def _ramp(t, lo, hi):
    return ((t - lo) / (hi - lo)).clamp(0, 1)


def _paint(img, mask, colour):
    """Alpha-blend ``colour`` ((n,3) or (n,3,H,W)) into ``img`` where ``mask`` ((n,H,W))."""
    if colour.ndim == 2:
        colour = _col(colour)
    img += (colour - img) * mask[:, None]


def _shade(img, mask, amount):
    """Darken (amount > 0) or lighten (amount < 0) ``img`` by ``amount * mask``."""
    img *= 1 - (mask * amount)[:, None]


def _fill(d, aa):
    """Signed distance (negative inside) -> anti-aliased coverage."""
    return (0.5 - d / aa).clamp(0, 1)


def _ellipse(x, y, cx, cy, a, b, aa):
    """Soft ellipse centred (cx, cy) with half-axes a, b (all broadcastable)."""
    dx, dy = x - cx, y - cy
    f = (dx / a) ** 2 + (dy / b) ** 2 - 1
    g = 2 * torch.sqrt((dx / a**2) ** 2 + (dy / b**2) ** 2) + 1e-6
    return _fill(f / g, aa)


def _segment(x, y, x0, y0, x1, y1, half_t, aa):
    """Soft capsule (thick line segment) from (x0, y0) to (x1, y1)."""
    px, py = x - x0, y - y0
    dx, dy = x1 - x0, y1 - y0
    h = ((px * dx + py * dy) / (dx * dx + dy * dy + 1e-9)).clamp(0, 1)
    dist = torch.sqrt((px - h * dx) ** 2 + (py - h * dy) ** 2)
    return _fill(dist - half_t, aa)


def _line(x, y, x0, y0, x1, y1, half_t, aa):
    """A thin line that stays visible at low resolution: the width is at least ~a pixel and
    the coverage is scaled down instead."""
    half_t = torch.as_tensor(half_t, dtype=torch.float32)
    width = torch.maximum(half_t, 0.5 * aa)
    return _segment(x, y, x0, y0, x1, y1, width, aa) * (half_t / width)


def _render(q: dict, size: int) -> torch.Tensor:
    """Draw a batch of faces; ``q`` maps parameter names to (n,) or (n, k) float tensors."""
    n = q["age"].shape[0]
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(lin, lin, indexing="ij")
    u, v = u[None], v[None]

    # ---- background -------------------------------------------------------------------------
    d = u * _v(torch.cos(q["bg_dir"])) + v * _v(torch.sin(q["bg_dir"]))
    t = (0.5 + 0.5 * d).clamp(0, 1)
    split = _v(q["bg_split"]) * ((u - _v(q["split_pos"])) / 0.03).clamp(0, 1)
    t = t * (1 - _v(q["bg_split"])) + split
    img = _col(q["bg1"]) * (1 - t[:, None]) + _col(q["bg2"]) * t[:, None]
    ang, freq, ph = q["bg_ang"], q["bg_freq"], q["bg_phase"]
    waves = [torch.sin((u * _v(torch.cos(ang[:, k])) + v * _v(torch.sin(ang[:, k])))
                       * _v(freq[:, k]) + _v(ph[:, k])) for k in range(3)]
    stripes = torch.sign(waves[0]) * 0.5 + 0.5 * waves[0]
    blotch = (waves[0] + waves[1] * waves[2]) / 2
    img = img * (1 + (_v(q["bg_stripe"]) * stripes + _v(q["bg_blotch"]) * blotch)[:, None])

    # ---- pose: image -> face coordinates ----------------------------------------------------
    scale = _v(q["scale"])
    c, s = _v(torch.cos(q["rot"])), _v(torch.sin(q["rot"]))
    du, dv = u - _v(q["tx"]), v - _v(q["ty"])
    x = (du * c + dv * s) / scale
    y = (-du * s + dv * c) / scale
    aa = 2.0 / size / scale * 1.1            # about one pixel, in face units
    yaw = _v(q["yaw"])
    xo = x / (1 - 0.12 * yaw.abs())          # outline: squashed by the head turn
    xi = xo - 0.07 * yaw                     # inner features slide towards the turn

    # ---- age-dependent geometry -------------------------------------------------------------
    age = q["age"]
    kid = _ramp(age, 3.0, 0.0)               # 1 for a toddler, 0 from class d on
    wrinkle = _ramp(age, 2.5, 7.0)
    grey = _ramp(age, 3.5, 7.0)
    sag = _ramp(age, 4.5, 7.5)
    beard_on = _ramp(age, 2.6, 3.6)
    bald = q["bald_prone"] * _ramp(age, 3.0, 6.5)

    fw = _v(q["face_w"] * (1 + 0.05 * kid))
    ftop = _v(q["face_top"])
    flow = _v(q["face_low"] * (1 - 0.14 * kid + 0.05 * sag))
    jaw = _v(q["jaw"] * (1 - 0.7 * kid))
    ew = _v(q["eye_w"] * (1 + 0.35 * kid))
    ey = _v(q["eye_y"] + 0.08 * kid)
    es = _v(q["eye_sep"])
    nose_len = _v(q["nose_len"] * (1 - 0.35 * kid))
    nose_w = _v(q["nose_w"] * (1 - 0.25 * kid))
    tip = ey + nose_len
    my = tip + (flow - tip) * 0.38
    mw = _v(q["mouth_w"] * (1 - 0.22 * kid) * (1 + 0.35 * q["width"]).clamp(min=0.4))
    lip_t = _v(q["lip_t"] * (1 - 0.35 * sag))
    brow_t = _v(q["brow_t"] * (1 - 0.45 * kid))

    grey_hair = torch.as_tensor(_GREY_HAIR, dtype=torch.float32)
    hair_col = _col(q["hair_col"] * (1 - grey[:, None]) + grey_hair * grey[:, None])
    lum = (q["skin"] * torch.tensor([0.3, 0.59, 0.11])).sum(1, keepdim=True)
    skin = q["skin"] * (1 - 0.15 * wrinkle[:, None]) + lum * 0.15 * wrinkle[:, None]
    # strands fade out before they get too fine for the resolution (no aliasing stripes)
    strand = _v(q["hair_tex"]) * (1 - _v(q["hair_freq"]) * aa / 2.0).clamp(0, 1)
    hair_tex = 1 + strand * torch.sin(
        (x * _v(torch.cos(q["hair_ang"])) + y * _v(torch.sin(q["hair_ang"]))) * _v(q["hair_freq"]))
    hair_pix = hair_col * hair_tex[:, None]

    # ---- hair behind the head ---------------------------------------------------------------
    vol = _v(q["volume"] + q["hair_jit"])
    hw = fw * 1.12 + vol
    cap = _ellipse(xo, y, 0.0, -0.04, hw, ftop * 1.04 + vol, aa)
    bottom = -0.1 + _v(q["hair_len"]) * 1.0          # long hair falls to the shoulders
    curtain = _fill(xo.abs() - hw, aa) * _fill(y - bottom, 2 * aa) * (y > -0.2).float()
    bald_zone = _ellipse(xo, y, 0.0, -ftop, fw * 0.85, ftop * 0.55 + vol + 0.1, aa) * _v(bald)
    back = torch.maximum(cap, curtain) * (1 - bald_zone)
    _paint(img, back, hair_pix)

    # ---- neck, clothes, ears ----------------------------------------------------------------
    neck = _segment(xo, y, 0.0, 0.3, 0.0, 1.6, fw * 0.5, aa)
    _paint(img, neck, q["skin"] * 0.82)
    cloth = _ellipse(xo, y, 0.0, 1.3, _v(q["cloth_w"]), 0.55, aa)
    _paint(img, cloth, q["cloth"])
    ear_vis = _v(1 - _ramp(q["hair_len"], 0.45, 0.7))
    ears = _ellipse(xo.abs(), y, fw * 0.97, ey + 0.07, 0.05, 0.09, aa) * ear_vis
    _paint(img, ears, skin * 0.92)

    # ---- the face ---------------------------------------------------------------------------
    yn = (y / flow).clamp(0, 1)
    width = fw * (1 - jaw * yn**2) * (1 + 0.10 * _v(sag) * torch.exp(-((yn - 0.75) / 0.2) ** 2))
    height = torch.where(y < 0, ftop, flow)
    face = _ellipse(xo, y, 0.0, 0.0, width, height, aa)
    _paint(img, face, skin)
    r2 = ((xo / fw) ** 2 + (y / torch.maximum(ftop, flow)) ** 2).clamp(0, 1)
    _shade(img, face, 0.18 * r2**2)                         # rounded look
    cheeks = _ellipse(xi.abs(), y, es + 0.02, tip - 0.01, 0.07, 0.045, 3 * aa) * face
    _paint(img, cheeks * _v(0.35 * kid + 0.08), torch.tensor([[0.9, 0.45, 0.45]]).expand(n, 3))

    # moles and age spots
    mole = _ellipse(xi, y, _v(q["mole_x"]), _v(q["mole_y"]), 0.014, 0.014, aa) * _v(q["mole"])
    _shade(img, mole, 0.55)
    for k in range(3):
        spot = _ellipse(xi, y, _v(q["spots_x"][:, k]), _v(q["spots_y"][:, k]), 0.02, 0.016,
                        2 * aa)
        _shade(img, spot * face, 0.28 * _v(sag))

    # ---- wrinkles: strength grows with age (and with some expressions) ----------------------
    wr = _v(wrinkle)
    raise_ = _v(q["brow_raise"]).clamp(min=0)
    forehead = 0
    for k in range(3):
        yk = ey - 0.17 - 0.045 * k
        forehead = forehead + _line(xi, y - 0.02 * (xi / 0.2) ** 2, -0.2 + 0.03 * k, yk,
                                    0.2 - 0.03 * k, yk, 0.006, aa)
    _shade(img, forehead.clamp(0, 1) * face, 0.38 * (wr + 0.35 * raise_))
    crow = 0
    for k in (-1, 0, 1):
        x0 = es + ew * 1.15
        crow = crow + _line(xi.abs(), y, x0, ey, x0 + 0.05, ey + 0.025 * k, 0.005, aa)
    _shade(img, crow.clamp(0, 1), 0.45 * wr)
    smile = _v(q["curve"]).clamp(min=0)
    fold = _line(xi.abs(), y, nose_w * 0.9, tip - 0.02, mw * 1.15, my + 0.02, 0.006, aa)
    _shade(img, fold, 0.4 * wr + 0.15 * smile)
    marion = _line(xi.abs(), y, mw * 1.05, my + 0.03, mw * 1.1, my + 0.12, 0.006, aa)
    _shade(img, marion * face, 0.4 * _v(sag))
    bags = _line(xi.abs(), y - 0.015 * ((xi.abs() - es) / ew) ** 2, es - ew * 0.7,
                 ey + ew * 0.75, es + ew * 0.7, ey + ew * 0.75, 0.006, aa)
    _shade(img, bags, 0.35 * _v(sag) + 0.1 * wr)

    # ---- beard and moustache ----------------------------------------------------------------
    bpix = hair_col * (1 + 0.12 * torch.sin(x * 90) * torch.sin(y * 80))[:, None]
    beard_line = tip + 0.03 + 0.10 * (xo.abs() / fw) - 0.1 * (xo.abs() / fw) ** 2
    beard = face * _fill(beard_line - y, 2 * aa) * _v(q["beard"] * beard_on)
    _paint(img, beard * 0.9, bpix)

    # ---- nose -------------------------------------------------------------------------------
    side = torch.where(yaw >= 0, 1.0, -1.0)
    bridge = _line(xi * side, y, nose_w * 0.25, ey + 0.05, nose_w * 0.55, tip - 0.02,
                   0.006, aa)
    _shade(img, bridge, 0.18)
    tipm = _ellipse(xi, y, 0.0, tip - 0.005, nose_w * 0.8, 0.028, 3 * aa)
    _shade(img, tipm, -0.06)
    nostrils = _ellipse(xi.abs(), y, nose_w * 0.45, tip + 0.008, nose_w * 0.28, 0.012, aa)
    _shade(img, nostrils, 0.45)
    scrunch = _line(xi.abs(), y, 0.012, ey + 0.035, 0.03, ey + 0.06, 0.005, aa)
    _shade(img, scrunch, 0.5 * _v(q["lip_raise"]).clamp(0, 1.5))

    # ---- mouth ------------------------------------------------------------------------------
    xm = xi / mw
    prof = (1 - xm**2).clamp(min=0)
    inside = _fill(xm.abs() - 1, aa / mw)
    curve = _v(q["curve"]) * 0.075
    centre = my - curve * xm**2 + curve * 0.35
    openness = _v(q["open"].clamp(0, 1.3)) * 0.07
    up_raise = _v(q["lip_raise"].clamp(0, 1.5)) * 0.045 * ((xm + 0.2) / 1.2).clamp(0, 1)
    gap_up = (openness * prof + up_raise * prof.sqrt())
    gap_dn = openness * prof
    top_edge = centre - gap_up - lip_t * prof.sqrt()
    bot_edge = centre + gap_dn + 1.3 * lip_t * prof.sqrt()
    lips = _fill(top_edge - y, aa) * _fill(y - bot_edge, aa) * inside
    _paint(img, lips, q["lip_col"])
    cavity = _fill(centre - gap_up - y, aa) * _fill(y - centre - gap_dn, aa) * inside
    _paint(img, cavity, torch.tensor([[0.25, 0.06, 0.07]]).expand(n, 3))
    teeth = cavity * _fill(y - (centre - gap_up + 0.45 * (gap_up + gap_dn)), aa) \
        * _v((q["curve"] + 0.3).clamp(0, 1))
    _paint(img, teeth, torch.tensor([[0.95, 0.93, 0.88]]).expand(n, 3))
    seam = _fill((y - centre).abs() - 0.004, aa) * inside * (1 - cavity)
    _shade(img, seam, 0.45)
    must = _ellipse(xi, y, 0.0, my - lip_t - 0.022, mw * 1.1, 0.022, aa)
    _paint(img, must * _v(q["moustache"] * beard_on) * 0.9, bpix)

    # ---- eyes -------------------------------------------------------------------------------
    open_f = _v((1 + 0.6 * q["eye_open"]).clamp(0.15, 2.0))
    eh = ew * _v(q["eye_h"]) * open_f
    ex = xi.abs()
    outline = _ellipse(ex, y, es, ey, ew * 1.08, eh + 0.008, aa)
    _paint(img, outline, skin * 0.35)
    sclera = _ellipse(ex, y, es, ey, ew, eh, aa)
    _paint(img, sclera, torch.tensor([[0.96, 0.95, 0.93]]).expand(n, 3))
    gx = _v(q["gaze_x"]) * ew * 0.35
    gy = _v(q["gaze_y"]) * ew * 0.2
    iris_r = ew * 0.52
    # gaze is a shared direction, so mirror it for the left eye
    gxs = torch.where(xi >= 0, gx, -gx)
    iris = _ellipse(ex, y, es + gxs, ey + gy, iris_r, iris_r, aa) * sclera
    _paint(img, iris, q["iris_col"])
    pupil = _ellipse(ex, y, es + gxs, ey + gy, iris_r * 0.45, iris_r * 0.45, aa) * sclera
    _paint(img, pupil, torch.zeros(n, 3) + 0.03)
    lid = _line(ex, y + 0.3 * (ex - es) ** 2 / ew, es - ew, ey - eh, es + ew, ey - eh,
                0.005, aa)
    _shade(img, lid * _ellipse(ex, y, es, ey, ew * 1.15, eh * 2, aa), 0.4)

    # ---- brows ------------------------------------------------------------------------------
    b_in, b_out = es - ew * 1.05, es + ew * 1.15
    b_base = ey - eh / open_f - _v(q["brow_gap"]) - 0.065 * _v(q["brow_raise"])
    b_tilt = 0.05 * _v(q["brow_angle"])        # > 0: inner ends go up (sad / fearful)
    tb = ((ex - b_in) / (b_out - b_in))
    yb = b_base - b_tilt * (1 - tb.clamp(0, 1)) - _v(q["brow_arch"]) * 4 * tb * (1 - tb)
    thick = brow_t * (1 - 0.5 * tb.clamp(0, 1))
    brow = _fill((y - yb).abs() - thick, aa) * _fill(-tb * (b_out - b_in), aa) \
        * _fill((tb - 1) * (b_out - b_in), aa)
    brow_col = hair_col * 0.75 * (1 - 0.5 * _v(kid))[:, None] + _col(skin) * 0.5 * _v(kid)[:, None]
    _paint(img, brow * 0.92, brow_col)

    # ---- hair in front ----------------------------------------------------------------------
    hl = -ftop + _v(q["fringe"]) * ftop + _v(q["part"]) * xo \
        + _v(q["temple"]) * (xo.abs() / fw).clamp(0, 1.2) ** 3
    front = cap * _fill(y - hl, aa) * (1 - bald_zone)
    _paint(img, front, hair_pix)

    # ---- glasses ----------------------------------------------------------------------------
    gl = _v(q["glasses"])
    lens_r = _v(q["eye_w"]) * _v(q["frame_r"])
    pw = _v(q["frame_sq"])
    lx, ly = (ex - es).abs() / lens_r, (y - ey).abs() / (lens_r * 0.8)
    rad = (lx.clamp(min=1e-6) ** pw + ly.clamp(min=1e-6) ** pw) ** (1 / pw)
    ft = _v(q["frame_t"])
    lens = _fill((rad - 1) * lens_r, aa)
    ring = _fill(((rad - 1) * lens_r).abs() - ft, aa)
    _shade(img, lens * gl, 0.6 * _v(q["tint"]))
    bridge_g = _segment(xi, y, -(es - lens_r), ey - 0.01, es - lens_r, ey - 0.01, ft, aa)
    arms = _segment(ex, y, es + lens_r, ey - 0.01, fw * 0.98, ey + 0.01, ft, aa)
    frame = torch.maximum(torch.maximum(ring, bridge_g), arms) * gl
    _paint(img, frame, q["frame_col"])

    # ---- earrings ---------------------------------------------------------------------------
    ring_e = _ellipse(xo.abs(), y, fw * 0.99, ey + 0.2, 0.022, 0.022, aa) * _v(q["earring"])
    _paint(img, ring_e, q["earring_col"])

    # ---- light ------------------------------------------------------------------------------
    g = u * _v(torch.cos(q["grad_dir"])) + v * _v(torch.sin(q["grad_dir"]))
    img = (img - 0.5) * _col(q["contrast"][:, None].expand(n, 3)) + 0.5
    img = img * (_v(q["bright"]) * (1 + _v(q["grad"]) * g))[:, None] + _col(q["cast"])
    return img
