"""Data hygiene: duplicate and near-duplicate images across the forget, retain, val and test sets.

Why it matters for unlearning: if a forget image also sits in the retain set (the same photo,
or a re-saved / slightly edited copy), no unlearning method can make the model "forget" it,
since the retain data teach it right back, and the retrained reference model has seen it too.
A copy in val or test blurs the membership-inference attack, whose "unseen" side then holds
member images. MUFAC, the paper's age benchmark, is known to contain over 250 identical image
pairs, some of them across forget and retain.

How duplicates are found
------------------------
Every image is decoded once from its split's source (files or in-memory tensors):

* **exact duplicates**: same decoded pixels (a BLAKE2 hash of the shape and the uint8 pixels;
  two files that decode to the same pixels count, whatever their bytes on disk);
* **near duplicates**: a 64-bit perceptual hash (pHash) – the image in grayscale (ITU-R 601
  luma) resized to 32x32 with an antialiasing filter, its 2-D DCT-II, the 8x8 block of the
  lowest frequencies, one bit per coefficient: above the block's median or not. Re-saving as
  JPEG, small brightness/contrast changes, resizing and mild blur move only a few bits; two
  different pictures differ in about half of them. Pairs whose Hamming distance is at most
  ``threshold`` (default 6 of 64 bits) are candidates;
* **a second check** for the candidates: the correlation of the two images' 16x16 *colour*
  thumbnails (each standardised over its pixels and channels, so insensitive to brightness and
  contrast) must reach ``min_similarity`` (default 0.98). 64 bits of low grayscale frequencies
  cannot tell apart many *different* aligned faces: on the kit's synthetic faces (quick profile,
  seed 0, 3,164 images) pHash <= 6 alone flagged 915 pairs, nearly all of two different people;
  a first version of this check on *grayscale* thumbnails (>= 0.95) still kept 42 of them, all
  of different people (different skin, hair and background colours). On colour thumbnails those
  915 candidates correlate at most 0.957, while copies of the same images re-saved as JPEG
  (quality 30 or 60), brightened by 10 % or with 15 % more contrast all correlate at >= 0.986;
  with the default 0.98 none of the 915 remains. ``min_similarity=None`` reports every pHash
  match. Crops and shifts of a few pixels move the pHash by up to ~18 bits, so this finds
  copies and light edits, not re-framed versions of a photo.

All pairs are compared, within and across splits: the hashes are 64-bit integers, XOR-ed a
block of rows at a time against all later images with a vectorised popcount, so MUFAC's ~13k
images (~85 million pairs) take a second or two after hashing.

What to do about them
---------------------
:func:`drop_forget_leaks` keeps the forget set intact (the people who asked to be forgotten
define it) and removes, from retain, val and test, every image that duplicates a forget image.
The alternative – dropping the forget copy – would shrink the set the user asked to forget and
still leave the copy in retain, which is the very leak; dropping both sides would do the same.
Duplicates that do not involve the forget set (e.g. retain-test) are reported by
:func:`find_duplicates` but left alone: they do not break unlearning, they only inflate test
accuracy slightly, and the paper's numbers were computed with them.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DatasetError
from .splits import FileSource, ImageSource, TensorSource, UnlearningSplits

__all__ = ["HYGIENE_SPLITS", "DEFAULT_THRESHOLD", "DEFAULT_MIN_SIMILARITY", "image_hashes",
           "perceptual_hash", "hamming", "find_duplicates", "duplicate_summary",
           "plot_duplicate_pairs", "drop_forget_leaks"]

#: the splits compared (train is retain + forget and is not compared separately)
HYGIENE_SPLITS = ("forget", "retain", "val", "test")
#: Hamming distance (of 64 bits) up to which two images count as near duplicates
DEFAULT_THRESHOLD = 6
#: thumbnail correlation a pHash match must also reach (None: no second check)
DEFAULT_MIN_SIMILARITY = 0.98
_HASH_SIDE = 32   # side of the grayscale image the DCT is taken of
_THUMB_SIDE = 16  # side of the colour thumbnails of the second check
_LOW_FREQ = 8     # the hash keeps the 8x8 lowest-frequency DCT coefficients -> 64 bits
_LUMA = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------
def _as_uint8(img: torch.Tensor) -> torch.Tensor:
    """A decoded CHW image as uint8 with 3 channels (float sources are taken to be in [0, 1])."""
    if img.dtype.is_floating_point:
        img = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return img


def _gray_small(batch: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) uint8 -> (B, 32, 32) float64 luma, resized with antialiasing.

    The per-image work is done in NumPy: on small images torch's element-wise kernels cost
    more in thread start-up than in arithmetic, which matters on a busy machine."""
    x = batch.astype(np.float32)
    gray = _LUMA[0] * x[:, 0] + _LUMA[1] * x[:, 1] + _LUMA[2] * x[:, 2]
    small = F.interpolate(torch.from_numpy(gray[:, None]), size=(_HASH_SIDE, _HASH_SIDE),
                          mode="bilinear", antialias=True, align_corners=False)
    return small[:, 0].numpy().astype(np.float64)


def _colour_thumbs(batch: np.ndarray) -> np.ndarray:
    """(B, 3, H, W) uint8 -> (B, 3 * 16 * 16) float32 colour thumbnails, each standardised to
    zero mean and unit norm over its pixels and channels (a dot product is a correlation)."""
    x = torch.from_numpy(batch.astype(np.float32))
    small = F.interpolate(x, size=(_THUMB_SIDE, _THUMB_SIDE), mode="bilinear", antialias=True,
                          align_corners=False).reshape(len(batch), -1).numpy().astype(np.float64)
    small -= small.mean(axis=1, keepdims=True)
    small /= np.maximum(np.linalg.norm(small, axis=1, keepdims=True), 1e-8)
    return small.astype(np.float32)


def _phash_bits(small: np.ndarray) -> np.ndarray:
    """(N, 32, 32) grayscale -> (N,) uint64 perceptual hashes."""
    from scipy.fft import dctn
    coef = dctn(small, type=2, norm="ortho", axes=(1, 2))[:, :_LOW_FREQ, :_LOW_FREQ]
    coef = coef.reshape(len(small), _LOW_FREQ * _LOW_FREQ)
    bits = coef > np.median(coef, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").astype(np.uint64).ravel()


def _exact_hash(img: np.ndarray) -> str:
    """Digest of a (3, H, W) uint8 image: its shape and its pixels in CHW order."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(tuple(img.shape)).encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def _hash_source(source: ImageSource, progress: bool, desc: str, batch_size: int = 256
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact digests, perceptual hashes and standardised 16x16 colour thumbnails (float32,
    (N, 768)) of every image of ``source``, each image decoded once."""
    from tqdm.auto import tqdm
    n = len(source)
    exact = np.empty(n, dtype="U32")
    phash = np.empty(n, dtype=np.uint64)
    thumbs = np.empty((n, 3 * _THUMB_SIDE * _THUMB_SIDE), dtype=np.float32)
    with tqdm(total=n, desc=desc, disable=not progress, unit="img") as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if isinstance(source, TensorSource):  # one batched resize for in-memory images
                batch = source.images[start:stop].numpy()
                small = _gray_small(batch)
                thumbs[start:stop] = _colour_thumbs(batch)
                for k in range(stop - start):
                    exact[start + k] = _exact_hash(batch[k])
            else:
                smalls = []
                for i in range(start, stop):
                    img = np.ascontiguousarray(_as_uint8(source.get(i)).numpy())
                    exact[i] = _exact_hash(img)
                    smalls.append(_gray_small(img[None]))
                    thumbs[i] = _colour_thumbs(img[None])[0]
                small = np.concatenate(smalls)
            phash[start:stop] = _phash_bits(small)
            bar.update(stop - start)
    return exact, phash, thumbs


def image_hashes(source: ImageSource, progress: bool = False, desc: str = "hashing images"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(exact, phash)`` of every image of ``source``: hex pixel digests (str) and 64-bit
    perceptual hashes (uint64). Each image is decoded once."""
    exact, phash, _ = _hash_source(source, progress, desc)
    return exact, phash


def perceptual_hash(image: torch.Tensor) -> int:
    """The 64-bit pHash of one uint8 CHW image (as a Python int)."""
    return int(_phash_bits(_gray_small(_as_uint8(image).numpy()[None]))[0])


_BYTE_COUNTS = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64 (NumPy >= 2 has it built in)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _BYTE_COUNTS[x.view(np.uint8).reshape(*x.shape, 8)].sum(-1, dtype=np.uint8)


def hamming(a: int | np.ndarray, b: int | np.ndarray) -> np.ndarray | int:
    """Hamming distance between 64-bit hashes."""
    d = _popcount(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))
    return int(d) if np.ndim(d) == 0 else d


def _close_pairs(h: np.ndarray, threshold: int, chunk: int = 256
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with Hamming(h[i], h[j]) <= threshold, a block of rows at a time
    (memory: chunk x N x 9 bytes)."""
    n = len(h)
    out_i, out_j, out_d = [], [], []
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        d = _popcount(h[s:e, None] ^ h[None, s:])  # columns s..n-1
        r, c = np.nonzero(d <= threshold)
        keep = c > r                                   # j > i (both offset by s)
        r, c = r[keep], c[keep]
        out_i.append(r + s)
        out_j.append(c + s)
        out_d.append(d[r, c])
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64),
            np.concatenate(out_d).astype(np.int64))


# --------------------------------------------------------------------------------------------
# finding duplicates
# --------------------------------------------------------------------------------------------
def find_duplicates(splits: UnlearningSplits, threshold: int = DEFAULT_THRESHOLD,
                    min_similarity: float | None = DEFAULT_MIN_SIMILARITY, progress: bool = True,
                    chunk: int = 256) -> "pandas.DataFrame":  # noqa: F821
    """Every pair of exact or near-duplicate images among forget, retain, val and test.

    Parameters
    ----------
    splits : the dataset.
    threshold : largest Hamming distance (of 64 pHash bits) that makes two images candidates;
        0 keeps only identical hashes.
    min_similarity : candidates must also have a correlation of their 16x16 colour
        thumbnails of at least this much to be reported (see the module docstring); ``None``
        reports every pHash match. Pixel-identical pairs are always reported.
    progress : show a progress bar while hashing.
    chunk : rows compared at once (memory ~ chunk x images x 9 bytes).

    Returns
    -------
    DataFrame with one row per pair: ``split_a, index_a, split_b, index_b`` (index within the
    split; split_a comes first in forget, retain, val, test order, so a leaking pair always
    has ``split_a == "forget"``), ``distance`` (Hamming), ``similarity`` (colour-thumbnail
    correlation), ``exact`` (same decoded pixels), ``leak`` (one side in forget, the other in
    retain/val/test), ``label_a, label_b`` and, when the images are files, ``path_a, path_b``.
    Sorted leaks first, then by distance. ``df.attrs`` records the threshold, min_similarity
    and the split sizes (checked by :func:`drop_forget_leaks`).
    """
    import pandas as pd
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) \
            or not 0 <= threshold <= 64:
        raise DatasetError(f"threshold must be an integer Hamming distance from 0 to 64; got "
                           f"{threshold!r} (default {DEFAULT_THRESHOLD})")
    if min_similarity is not None and not -1.0 <= float(min_similarity) <= 1.0:
        raise DatasetError(f"min_similarity must be a correlation in [-1, 1] or None; got "
                           f"{min_similarity!r} (default {DEFAULT_MIN_SIMILARITY})")
    datasets = [splits.split(s) for s in HYGIENE_SPLITS]
    parts = [_hash_source(d.source, progress, f"hashing {name}")
             for name, d in zip(HYGIENE_SPLITS, datasets)]
    exact = np.concatenate([p[0] for p in parts])
    phash = np.concatenate([p[1] for p in parts])
    thumbs = np.concatenate([p[2] for p in parts])
    code = np.concatenate([np.full(len(d), k) for k, d in enumerate(datasets)])
    local = np.concatenate([np.arange(len(d)) for d in datasets])
    labels = np.concatenate([d.labels for d in datasets])
    i, j, dist = _close_pairs(phash, int(threshold), chunk)
    same = exact[i] == exact[j]
    sim = np.empty(len(i), np.float64)
    for s in range(0, len(i), 65536):  # row-wise dot products of the candidate pairs
        sim[s:s + 65536] = np.einsum("ij,ij->i", thumbs[i[s:s + 65536]], thumbs[j[s:s + 65536]])
    sim[same] = 1.0
    if min_similarity is not None:
        keep = same | (sim >= float(min_similarity))
        i, j, dist, same, sim = i[keep], j[keep], dist[keep], same[keep], sim[keep]
    names = np.asarray(HYGIENE_SPLITS)
    forget_code = HYGIENE_SPLITS.index("forget")
    df = pd.DataFrame({
        "split_a": names[code[i]], "index_a": local[i], "split_b": names[code[j]],
        "index_b": local[j], "distance": dist, "similarity": np.round(sim, 4), "exact": same,
        "leak": (code[i] == forget_code) != (code[j] == forget_code),
        "label_a": labels[i], "label_b": labels[j]})
    if all(isinstance(d.source, FileSource) for d in datasets):
        paths = np.asarray([str(p) for d in datasets for p in d.source.paths], dtype=object)
        df["path_a"] = paths[i]
        df["path_b"] = paths[j]
    df = df.sort_values(["leak", "distance", "split_a", "index_a", "split_b", "index_b"],
                        ascending=[False, True, True, True, True, True], kind="stable")
    df = df.reset_index(drop=True)
    df.attrs.update({"threshold": int(threshold), "dataset": splits.name,
                     "min_similarity": None if min_similarity is None else float(min_similarity),
                     "sizes": {s: len(d) for s, d in zip(HYGIENE_SPLITS, datasets)}})
    return df


def duplicate_summary(df: "pandas.DataFrame") -> "pandas.DataFrame":  # noqa: F821
    """Counts per split pair: ``pairs``, ``exact``, ``near`` (within the threshold but not
    pixel-identical) and ``leaks`` (pairs that put a forget image into another split)."""
    import pandas as pd
    rows = []
    for a_k, a in enumerate(HYGIENE_SPLITS):
        for b in HYGIENE_SPLITS[a_k:]:
            sel = df[(df["split_a"] == a) & (df["split_b"] == b)] if len(df) else df
            if len(sel) == 0:
                continue
            n_exact = int(sel["exact"].sum())
            rows.append({"split_a": a, "split_b": b, "pairs": len(sel), "exact": n_exact,
                         "near": len(sel) - n_exact, "leaks": int(sel["leak"].sum())})
    out = pd.DataFrame(rows, columns=["split_a", "split_b", "pairs", "exact", "near", "leaks"])
    return out.set_index(["split_a", "split_b"])


def plot_duplicate_pairs(splits: UnlearningSplits, df: "pandas.DataFrame", n: int = 8,  # noqa: F821
                         cell: float = 1.6):
    """Up to ``n`` pairs of ``df`` (in its order: leaks first, closest first) side by side,
    each image captioned with its split, index and class, each pair with its distance."""
    import matplotlib.pyplot as plt
    rows = df.head(int(n))
    if len(rows) == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no duplicate pairs in {splits.name!r}", ha="center", va="center")
        return fig
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * cell + 0.6, cell * len(rows) + 0.4),
                             squeeze=False)
    for r, row in enumerate(rows.itertuples(index=False)):
        for c, (split, idx) in enumerate(((row.split_a, row.index_a), (row.split_b, row.index_b))):
            img = _as_uint8(splits.split(split).source.get(int(idx)))
            ax = axes[r, c]
            ax.imshow(img.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            label = splits.class_names[int(splits.split(split).labels[int(idx)])]
            ax.set_title(f"{split}[{int(idx)}] {label}", fontsize=7)
        kind = "exact" if row.exact else f"d={int(row.distance)}"
        axes[r, 0].set_ylabel(kind + ("\nLEAK" if row.leak else ""), fontsize=7, rotation=0,
                              ha="right", va="center", color="crimson" if row.leak else "black")
    fig.suptitle(f"{splits.name}: duplicate pairs ({len(df)} in all, "
                 f"{int(df['leak'].sum())} leak forget images)", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# removing leaks
# --------------------------------------------------------------------------------------------
def drop_forget_leaks(splits: UnlearningSplits, df: "pandas.DataFrame | None" = None,  # noqa: F821
                      policy: str = "all", threshold: int = DEFAULT_THRESHOLD,
                      min_similarity: float | None = DEFAULT_MIN_SIMILARITY,
                      progress: bool = False) -> UnlearningSplits:
    """A copy of ``splits`` without the retain/val/test images that duplicate a forget image.

    The forget set is kept intact (see the module docstring for why); of every leaking pair,
    the non-forget image is removed. Other duplicates are left alone.

    Parameters
    ----------
    splits : the dataset.
    df : the pairs from :func:`find_duplicates` on these very splits; ``None`` runs it with
        ``threshold``, ``min_similarity`` and ``progress``.
    policy : ``"all"`` drops the copies found at the DataFrame's threshold (exact and near
        duplicates); ``"exact"`` drops only pixel-identical copies.

    Returns
    -------
    A new UnlearningSplits (same class, names and transforms); ``info["hygiene"]`` records the
    policy, the threshold, the number of pairs and leaks, and the indices (and file paths, if
    any) dropped from each split, as indices into the splits that were passed in.
    """
    if policy not in ("all", "exact"):
        raise DatasetError(f"policy={policy!r} is unknown: use 'all' (exact and near duplicates) or "
                           f"'exact' (pixel-identical copies only)")
    if df is None:
        df = find_duplicates(splits, threshold=threshold, min_similarity=min_similarity,
                             progress=progress)
    sizes = {s: len(splits.split(s)) for s in HYGIENE_SPLITS}
    if df.attrs.get("sizes") not in (None, sizes):
        raise DatasetError(f"the duplicate table was computed for splits of sizes {df.attrs['sizes']}, "
                           f"not these ({sizes}): run find_duplicates(splits) on these splits again")
    leaks = df[df["leak"]] if len(df) else df
    if policy == "exact" and len(leaks):
        leaks = leaks[leaks["exact"]]
    drop: dict[str, list[int]] = {s: [] for s in ("retain", "val", "test")}
    for row in leaks.itertuples(index=False):
        other, idx = (row.split_b, row.index_b) if row.split_a == "forget" else (row.split_a, row.index_a)
        drop[other].append(int(idx))
    drop = {s: sorted(set(v)) for s, v in drop.items()}
    changes = {}
    for split, idx in drop.items():
        data = splits.split(split)
        if len(idx) >= len(data):
            raise DatasetError(f"every image of the {split} split duplicates a forget image; "
                               f"dropping them would leave it empty. Check the forget list and "
                               f"the threshold ({df.attrs.get('threshold')}).")
        keep = np.setdiff1d(np.arange(len(data)), np.asarray(idx, np.int64))
        if idx:
            changes[split] = data.subset(keep)
    record = {"policy": policy, "threshold": df.attrs.get("threshold"),
              "min_similarity": df.attrs.get("min_similarity"), "pairs_found": int(len(df)),
              "leak_pairs": int(len(leaks)), "dropped": drop,
              "dropped_count": {s: len(v) for s, v in drop.items()}}
    if all(isinstance(splits.split(s).source, FileSource) for s in drop):
        record["dropped_paths"] = {s: [str(splits.split(s).source.paths[i]) for i in v]
                                   for s, v in drop.items()}
    info = dict(splits.info)
    if "hygiene" in info:
        record["previous"] = info["hygiene"]
    info["hygiene"] = record
    return dataclasses.replace(splits, info=info, **changes)


def maybe_drop_leaks(splits: UnlearningSplits, drop_leaks: bool, threshold: int,
                     progress: bool) -> UnlearningSplits:
    """The ``drop_leaks=True`` option of every loader: find duplicates and remove the
    non-forget member of every pair that leaks a forget image (see :mod:`.hygiene`)."""
    if not drop_leaks:
        return splits
    pairs = find_duplicates(splits, threshold=threshold, progress=progress)
    return drop_forget_leaks(splits, pairs)
