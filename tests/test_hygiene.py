"""Duplicate and near-duplicate detection across forget / retain / val / test, and leak removal.

A fake MUFAC (see test_datasets_real.py) gets planted copies: an exact copy and two light
edits (a JPEG re-save at quality 60, a brightness change) of forget images in retain, val and
test, plus two duplicates that do not involve the forget set. Detection must find exactly
these and nothing among the distinct images; leak removal must drop exactly the three leaks.
"""
from __future__ import annotations

import shutil
import time

import matplotlib
import numpy as np
import pytest
import torch
from PIL import ImageEnhance

from dlfd_lib.data import (DatasetError, UnlearningSplits, drop_forget_leaks, duplicate_summary,
                           find_duplicates, load_mufac, load_splits, plot_duplicate_pairs)
from dlfd_lib.data import hygiene
from dlfd_lib.data.splits import IMAGENET_MEAN, IMAGENET_STD, SplitDataset, TensorSource, eval_transform

from test_datasets_real import make_mufac, pattern, save

matplotlib.use("Agg")

FORGET = 12  # forget = train rows 0..11; retain index = train row - 12
EXPECTED = {  # (split_a, index_a, split_b, index_b): (exact, leak)
    ("forget", 2, "retain", 18): (True, True),     # train row 30 is a byte copy of row 2
    ("forget", 5, "val", 4): (False, True),        # val row 4 = row 5 re-saved at quality 60
    ("forget", 9, "test", 7): (False, True),       # test row 7 = row 9, 8 % brighter
    ("retain", 28, "retain", 38): (True, False),   # train rows 40 and 50: a copy, no leak
    ("retain", 8, "test", 2): (False, False),      # test row 2 = row 20 re-saved at quality 70
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("mufac_dups")
    rows = make_mufac(root, train_fams=12, per_fam=5, val_fams=3, test_fams=3)
    train = root / "train_images"
    name = lambda split, r: rows[split]["image_path"][r]  # noqa: E731
    # the seeds of make_mufac: train row r has pattern(r), val row k pattern(60 + k), ...
    shutil.copyfile(train / name("train", 2), train / name("train", 30))
    save(pattern(5), root / "val_images" / name("val", 4), quality=60)
    save(ImageEnhance.Brightness(pattern(9)).enhance(1.08), root / "test_images" / name("test", 7))
    shutil.copyfile(train / name("train", 50), train / name("train", 40))
    save(pattern(20), root / "test_images" / name("test", 2), quality=70)
    return root


def pair_set(df):
    return {(r.split_a, int(r.index_a), r.split_b, int(r.index_b)): (bool(r.exact), bool(r.leak))
            for r in df.itertuples()}


def test_finds_exactly_the_planted_pairs(planted):
    s = load_mufac(planted, forget_size=FORGET, image_size=32)
    df = find_duplicates(s, progress=False)
    assert pair_set(df) == EXPECTED
    assert list(df["leak"][:3]) == [True] * 3  # leaks first
    near = df[~df["exact"]]
    assert (near["distance"] <= 3).all() and (near["similarity"] >= 0.98).all()
    assert (df[df["exact"]]["distance"] == 0).all()
    row = df[(df["split_b"] == "val")].iloc[0]
    assert row["path_a"].endswith(str(s.forget.source.paths[5].name))
    assert row["path_b"] == str(s.val.source.paths[4])
    assert (row["label_a"], row["label_b"]) == (s.forget.labels[5], s.val.labels[4])
    assert df.attrs["threshold"] == 6 and df.attrs["sizes"]["forget"] == FORGET
    # margin: a looser hash threshold without the similarity check still adds no false pair
    loose = find_duplicates(s, threshold=9, min_similarity=None, progress=False)
    assert pair_set(loose) == EXPECTED


def test_summary_counts_per_split_pair(planted):
    s = load_mufac(planted, forget_size=FORGET, image_size=32)
    summary = duplicate_summary(find_duplicates(s, progress=False))
    assert summary.loc[("forget", "retain")].to_dict() == {"pairs": 1, "exact": 1, "near": 0, "leaks": 1}
    assert summary.loc[("forget", "val")].to_dict() == {"pairs": 1, "exact": 0, "near": 1, "leaks": 1}
    assert summary.loc[("retain", "retain")].to_dict() == {"pairs": 1, "exact": 1, "near": 0, "leaks": 0}
    assert int(summary["pairs"].sum()) == 5 and int(summary["leaks"].sum()) == 3


def test_drop_forget_leaks_removes_exactly_the_leaks(planted):
    s = load_mufac(planted, forget_size=FORGET, image_size=32)
    df = find_duplicates(s, progress=False)
    clean = drop_forget_leaks(s, df)
    assert isinstance(clean, UnlearningSplits)
    h = clean.info["hygiene"]
    assert h["dropped"] == {"retain": [18], "val": [4], "test": [7]}
    assert h["dropped_paths"]["retain"] == [str(s.retain.source.paths[18])]
    assert h["policy"] == "all" and h["leak_pairs"] == 3 and h["pairs_found"] == 5
    assert clean.sizes() == {**s.sizes(), "train": s.sizes()["train"] - 1,
                             "retain": len(s.retain) - 1, "val": len(s.val) - 1,
                             "test": len(s.test) - 1}
    assert clean.forget.source.paths == s.forget.source.paths  # forget intact
    kept = set(clean.retain.source.paths)
    assert s.retain.source.paths[28] in kept and s.retain.source.paths[38] in kept
    assert s.retain.source.paths[18] not in kept
    assert list(clean.retain.identities) == [i for k, i in enumerate(s.retain.identities) if k != 18]
    assert not drop_forget_leaks(s, df).info is s.info and "hygiene" not in s.info
    assert pair_set(find_duplicates(clean, progress=False)) == {
        ("retain", 27, "retain", 37): (True, False), ("retain", 8, "test", 2): (False, False)}
    exact_only = drop_forget_leaks(s, df, policy="exact")
    assert exact_only.info["hygiene"]["dropped"] == {"retain": [18], "val": [], "test": []}
    # the same through load_splits (the one place leaks are dropped, for every loader)
    via_load_splits = load_splits("mufac", task="age", data_root=planted, forget_size=FORGET,
                                  image_size=32, drop_leaks=True)
    assert via_load_splits.info["hygiene"]["dropped"] == h["dropped"]
    assert via_load_splits.sizes() == clean.sizes()


def test_drop_forget_leaks_refuses_a_stale_table_and_bad_options(planted):
    s = load_mufac(planted, forget_size=FORGET, image_size=32)
    df = find_duplicates(s, progress=False)
    other = load_mufac(planted, forget_size=FORGET + 1, image_size=32)
    with pytest.raises(DatasetError, match="run find_duplicates"):
        drop_forget_leaks(other, df)
    with pytest.raises(DatasetError, match="policy='both' is unknown"):
        drop_forget_leaks(s, df, policy="both")
    with pytest.raises(DatasetError, match="threshold must be an integer"):
        find_duplicates(s, threshold=65, progress=False)


def test_plot_duplicate_pairs(planted):
    import matplotlib.pyplot as plt
    s = load_mufac(planted, forget_size=FORGET, image_size=32)
    df = find_duplicates(s, progress=False)
    fig = plot_duplicate_pairs(s, df, n=2)
    assert len(fig.axes) == 4 and fig.axes[0].get_title().startswith("forget[2]")
    plt.close(fig)
    fig = plot_duplicate_pairs(s, df.iloc[:0])
    plt.close(fig)


def test_in_memory_splits_and_no_false_pairs():
    imgs = torch.stack([torch.from_numpy(np.array(pattern(40_000 + k))).permute(2, 0, 1)
                        for k in range(48)])
    test = imgs[36:48].clone()
    test[3] = imgs[0]                                               # exact copy of forget 0
    retain = imgs[12:30].clone()
    retain[2] = (imgs[1].int() + 12).clamp(0, 255).to(torch.uint8)  # brighter forget 1
    tf = eval_transform(32, IMAGENET_MEAN, IMAGENET_STD)
    make = lambda x: SplitDataset(TensorSource(x), np.arange(len(x)) % 2, tf)  # noqa: E731
    s = UnlearningSplits("mem", "age", ["a", "b"], make(retain), make(imgs[:12]), make(imgs[30:36]),
                         make(test), 32)
    df = find_duplicates(s, progress=False)
    assert pair_set(df) == {("forget", 0, "test", 3): (True, True),
                            ("forget", 1, "retain", 2): (False, True)}
    assert "path_a" not in df.columns
    clean = drop_forget_leaks(s, df)
    assert clean.info["hygiene"]["dropped"] == {"retain": [2], "val": [], "test": [3]}
    assert "dropped_paths" not in clean.info["hygiene"]


def test_hash_search_is_exact_and_fast(monkeypatch):
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2 ** 63, 300, dtype=np.uint64) ^ (rng.integers(0, 2, 300, dtype=np.uint64) << 63)
    i, j, d = hygiene._close_pairs(h, 26, chunk=64)
    brute = {(a, b) for a in range(300) for b in range(a + 1, 300)
             if bin(int(h[a]) ^ int(h[b])).count("1") <= 26}
    assert set(zip(i.tolist(), j.tolist())) == brute and len(brute) > 0
    assert all(bin(int(h[a]) ^ int(h[b])).count("1") == k for a, b, k in zip(i, j, d))
    want = hygiene._popcount(h)
    monkeypatch.delattr(np, "bitwise_count", raising=False)  # the NumPy < 2 path
    np.testing.assert_array_equal(hygiene._popcount(h), want)
    monkeypatch.undo()
    big = rng.integers(0, 2 ** 63, 13_000, dtype=np.uint64)  # MUFAC-sized
    start = time.perf_counter()
    hygiene._close_pairs(big, 6)
    assert time.perf_counter() - start < 15


def test_no_false_pairs_among_the_synthetic_faces(tmp_path):
    """The kit's synthetic faces are all distinct images, but aligned faces look alike at 32x32
    in grayscale: the quick profile's 3,164 faces gave 915 pHash candidates and, with a grayscale
    thumbnail check, 42 false pairs of different people. The colour check must reject them all."""
    from dlfd_lib.data import find_duplicates, load_splits
    from dlfd_lib.profiles import get_profile

    splits = load_splits("synthetic", profile=get_profile("quick"), seed=0, data_root=tmp_path)
    assert len(find_duplicates(splits, progress=False)) == 0
    loose = find_duplicates(splits, min_similarity=None, progress=False)
    assert len(loose) > 100  # the hash alone does pair up different faces: the check is needed
