"""MUFAC, RAF-DB and any-folder loaders, on tiny fake datasets laid out like the real ones.

The real datasets cannot be downloaded here, so each test builds a copy of the published
layout in ``tmp_path`` with small images of seeded random multi-scale block patterns (distinct
images are structurally different, so the perceptual hash does not pair them up).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from dlfd_lib.data import (DATASETS, DatasetError, UnlearningSplits, load_folder, load_mufac,
                           load_rafdb, load_splits)
from dlfd_lib.data.common import GrayscaleSplits
from dlfd_lib.data.mufac import family_id
from dlfd_lib.data.splits import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from dlfd_lib.model import CheckpointError, build_model, load_checkpoint, save_checkpoint
from dlfd_lib.profiles import get_profile

LETTERS = "abcdefgh"


# --------------------------------------------------------------------------------------------
# fake data
# --------------------------------------------------------------------------------------------
def pattern(seed: int, size: int = 32) -> Image.Image:
    """A colour image of random blocks at several scales (seeded; distinct seeds give images
    that are structurally different)."""
    rng = np.random.default_rng(seed)
    acc = np.zeros((size, size, 3))
    for grid in (2, 4, 8, 16):
        cells = rng.normal(0.0, 1.0, (grid, grid, 3)) / grid
        acc += np.repeat(np.repeat(cells, size // grid, 0), size // grid, 1)
    acc = (acc - acc.min()) / (acc.max() - acc.min()) * 235 + 10
    return Image.fromarray(acc.astype(np.uint8))


def save(img: Image.Image, path, quality: int = 95):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, quality=quality)
    else:
        img.save(path)
    return path


def make_mufac(root, train_fams: int = 12, per_fam: int = 5, val_fams: int = 3, test_fams: int = 3,
               seed0: int = 0) -> dict:
    """MUFAC's published layout: three CSVs (with a leading index column, as pandas writes
    them) beside train_images/, val_images/, test_images/. Returns the rows of each CSV."""
    rows = {}
    seed = seed0
    for split, first, n_fams in (("train", 1, train_fams), ("val", 801, val_fams),
                                 ("test", 851, test_fams)):
        recs = []
        for f in range(first, first + n_fams):
            for k in range(per_fam):
                letter = LETTERS[(f + k) % 8]
                name = f"F{f:04d}_AGE_D_{18 + k}_{letter}{k}.jpg"
                save(pattern(seed), root / f"{split}_images" / name)
                seed += 1
                recs.append({"image_path": name, "age_class": letter, "gender": "m"})
        table = pd.DataFrame(recs)
        csv = {"train": "custom_train_dataset.csv", "val": "custom_val_dataset.csv",
               "test": "custom_test_dataset.csv"}[split]
        table.to_csv(root / csv)
        rows[split] = table
    return rows


def make_rafdb(root, per_class_train: int = 10, per_class_test: int = 3, names=None,
               seed0: int = 10_000, size: int = 48) -> None:
    """RAF-DB as the paper used it: train/<1..7>/ and test/<1..7>/ (JPEG, like the release)."""
    folders = names or [str(k) for k in range(1, 8)]
    seed = seed0
    for split, n in (("train", per_class_train), ("test", per_class_test)):
        for folder in folders:
            for k in range(n):
                save(pattern(seed, size), root / split / folder / f"{split}_{seed:05d}_aligned.jpg")
                seed += 1


def decode(path) -> torch.Tensor:
    with Image.open(path) as img:
        return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------------------------
# MUFAC
# --------------------------------------------------------------------------------------------
def test_mufac_paper_split_is_the_first_rows(tmp_path):
    rows = make_mufac(tmp_path)
    s = load_mufac(tmp_path, forget_size=12, image_size=32)
    assert isinstance(s, UnlearningSplits) and s.name == "mufac" and s.task == "age"
    assert s.sizes() == {"train": 60, "retain": 48, "forget": 12, "val": 15, "test": 15}
    assert s.num_classes == 8 and s.class_names[0].startswith("a") and s.class_names[7].startswith("h")
    assert s.mean == IMAGENET_MEAN and s.std == IMAGENET_STD and s.image_size == 32
    train = rows["train"]
    assert [p.name for p in s.forget.source.paths] == list(train["image_path"][:12])
    assert [p.name for p in s.retain.source.paths] == list(train["image_path"][12:])
    assert list(s.forget.labels) == [LETTERS.index(c) for c in train["age_class"][:12]]
    assert list(s.test.labels) == [LETTERS.index(c) for c in rows["test"]["age_class"]]
    assert list(s.forget.identities[:6]) == ["F0001"] * 5 + ["F0002"]
    assert set(s.identities("val")) == {"F0801", "F0802", "F0803"}
    assert s.info["split"] == "paper" and s.info["forget_size"] == 12
    # 12 rows = 2 families and 2 images of the third, which the notes point out
    assert any("F0003" in n for n in s.info["notes"])
    x, y = s.forget[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == s.forget.labels[0]
    assert s.summary().loc["forget", "identities"] == 3


def test_mufac_identity_split_is_disjoint_by_family_and_seeded(tmp_path):
    make_mufac(tmp_path)
    s = load_mufac(tmp_path, split="identity", forget_frac=0.25, seed=3, image_size=32)
    forget_fams = set(s.identities("forget"))
    assert forget_fams.isdisjoint(set(s.identities("retain")))
    assert len(s.forget) == 15 and len(forget_fams) == 3  # whole families of 5 images
    assert s.info["forget_identities"] == sorted(forget_fams)
    again = load_mufac(tmp_path, split="identity", forget_frac=0.25, seed=3, image_size=32)
    assert again.forget.source.paths == s.forget.source.paths
    other = [set(load_mufac(tmp_path, split="identity", forget_frac=0.25, seed=k,
                            image_size=32).identities("forget")) for k in range(4, 8)]
    assert any(o != forget_fams for o in other)
    # default share = forget_size / n_train
    d = load_mufac(tmp_path, split="identity", forget_size=20, image_size=32)
    assert len(d.forget) == 20


def test_mufac_paths_with_folder_or_absolute_and_family_parsing(tmp_path):
    rows = make_mufac(tmp_path, train_fams=4, val_fams=1, test_fams=1)
    t = rows["train"].copy()
    t.loc[0, "image_path"] = "train_images/" + t.loc[0, "image_path"]
    t.loc[1, "image_path"] = str(tmp_path / "train_images" / t.loc[1, "image_path"])
    t.to_csv(tmp_path / "custom_train_dataset.csv", index=False)
    s = load_mufac(tmp_path, forget_size=5, image_size=32)
    assert s.forget.source.paths[0] == tmp_path / "train_images" / rows["train"]["image_path"][0]
    assert s.forget.source.paths[1] == tmp_path / "train_images" / rows["train"]["image_path"][1]
    assert family_id("train_images/f0012_x.jpg") == "F0012"
    assert family_id("F0042/img_001.jpg") == "F0042"
    assert family_id("images/person_1.jpg") is None


def test_mufac_without_family_ids_has_no_identities(tmp_path):
    rows = make_mufac(tmp_path, train_fams=3, val_fams=1, test_fams=1)
    t = rows["train"].copy()
    src = tmp_path / "train_images" / t.loc[0, "image_path"]
    src.rename(tmp_path / "train_images" / "photo_0.jpg")
    t.loc[0, "image_path"] = "photo_0.jpg"
    t.to_csv(tmp_path / "custom_train_dataset.csv", index=False)
    with pytest.warns(UserWarning, match="no family id"):
        s = load_mufac(tmp_path, forget_size=5, image_size=32)
    assert s.identities("train") is None and "photo_0.jpg" in s.info["notes"][0]
    with pytest.raises(DatasetError, match="split='identity' needs a family id"), \
            pytest.warns(UserWarning):
        load_mufac(tmp_path, split="identity", image_size=32)


def test_mufac_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*custom_train_dataset.csv"):
        load_mufac(tmp_path / "nowhere")
    rows = make_mufac(tmp_path, train_fams=3, val_fams=1, test_fams=1)
    with pytest.raises(DatasetError, match="task='emotion'.*pass task='age'"):
        load_mufac(tmp_path, task="emotion")
    with pytest.raises(DatasetError, match="forget_size must be an integer from 1 to 14"):
        load_mufac(tmp_path, forget_size=15)
    with pytest.raises(DatasetError, match="split='random' is not a MUFAC split"):
        load_mufac(tmp_path, split="random")
    # missing CSV
    (tmp_path / "custom_val_dataset.csv").rename(tmp_path / "val.csv")
    with pytest.raises(FileNotFoundError, match="custom_val_dataset.csv does not exist"):
        load_mufac(tmp_path)
    (tmp_path / "val.csv").rename(tmp_path / "custom_val_dataset.csv")
    # missing column: named, with the columns found
    rows["test"].rename(columns={"age_class": "age"}).to_csv(tmp_path / "custom_test_dataset.csv")
    with pytest.raises(DatasetError, match=r"custom_test_dataset.csv lacks the column\(s\) "
                                           r"\['age_class'\]; columns found: .*'age'"):
        load_mufac(tmp_path)
    rows["test"].to_csv(tmp_path / "custom_test_dataset.csv")
    # unknown label: value, file and line
    bad = rows["train"].copy()
    bad.loc[3, "age_class"] = "z"
    bad.to_csv(tmp_path / "custom_train_dataset.csv")
    with pytest.raises(DatasetError, match=r"unknown age_class value\(s\) \['z'\] in .*"
                                           r"custom_train_dataset.csv at line 5"):
        load_mufac(tmp_path)
    rows["train"].to_csv(tmp_path / "custom_train_dataset.csv")
    # missing image: file named
    victim = tmp_path / "val_images" / rows["val"]["image_path"][2]
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=f"1 of 5 images .*custom_val_dataset.csv.*{victim.name}"):
        load_mufac(tmp_path)
    # a missing image folder is named as such
    (tmp_path / "val_images").rename(tmp_path / "val_imgs")
    with pytest.raises(FileNotFoundError, match="image folder .*val_images is missing"):
        load_mufac(tmp_path)
    (tmp_path / "val_imgs").rename(tmp_path / "val_images")
    save(pattern(99), victim)
    # unreadable image: found only when decoding, and named
    broken = tmp_path / "test_images" / rows["test"]["image_path"][1]
    broken.write_bytes(b"not a jpeg at all")
    s = load_mufac(tmp_path, forget_size=5, image_size=32)  # existence only
    with pytest.raises(RuntimeError, match=broken.name):
        s.test[1]
    with pytest.raises(DatasetError, match=f"1 of 5 images .* cannot be decoded: .*{broken.name}"):
        load_mufac(tmp_path, forget_size=5, verify_images=True)


# --------------------------------------------------------------------------------------------
# RAF-DB
# --------------------------------------------------------------------------------------------
def test_rafdb_split_counts_and_labels(tmp_path):
    make_rafdb(tmp_path)
    s = load_rafdb(tmp_path, image_size=32)
    # 70 train images: 7 validation, then of 63: 19 forget (30 %), 44 retain; test folder = 21
    assert s.sizes() == {"train": 63, "retain": 44, "forget": 19, "val": 7, "test": 21}
    assert s.name == "rafdb" and s.task == "emotion" and s.identities("train") is None
    assert s.class_names == ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    assert s.mean == (0.5, 0.5, 0.5) and s.std == (0.5, 0.5, 0.5)
    assert isinstance(s, GrayscaleSplits) and s.info["seed"] == 42
    all_train = {p for d in (s.retain, s.forget, s.val) for p in d.source.paths}
    assert len(all_train) == 70  # disjoint and complete
    for d in (s.retain, s.forget, s.val, s.test):  # folder k -> class k - 1
        assert all(int(p.parent.name) - 1 == y for p, y in zip(d.source.paths, d.labels))
    again = load_rafdb(tmp_path, seed=42, image_size=32)
    assert again.forget.source.paths == s.forget.source.paths
    assert again.val.source.paths == s.val.source.paths
    other = load_rafdb(tmp_path, seed=1, image_size=32)
    assert other.forget.source.paths != s.forget.source.paths
    assert (len(other.retain), len(other.forget), len(other.val)) == (44, 19, 7)


def test_rafdb_each_split_has_its_own_transform(tmp_path):
    """The released loader shared one dataset object, so the test transform silently applied
    to every split. Here the augmented view of retain is random, the evaluation views are
    deterministic and equal to grayscale + resize + normalise, and building the augmented view
    changes nothing else."""
    make_rafdb(tmp_path, per_class_train=4, per_class_test=2)
    s = load_rafdb(tmp_path, image_size=32)
    aug = s.dataset("retain", augment=True)
    torch.manual_seed(0)
    a, b = aug[0][0], aug[0][0]
    assert a.shape == (3, 32, 32) and not torch.equal(a, b), "training augmentation must be random"
    torch.testing.assert_close(a[0], a[1])  # still grayscale after augmentation
    raw = decode(s.retain.source.paths[0])
    gray = v2.Grayscale(num_output_channels=3)(raw)
    expected = eval_transform(32, (0.5,) * 3, (0.5,) * 3)(gray)
    manual = (torch.nn.functional.interpolate(gray[None].float(), size=(32, 32), mode="bilinear",
                                              antialias=True, align_corners=False)[0] / 255 - 0.5) / 0.5
    for view in (s.retain, s.dataset("retain", augment=False), s.train):
        torch.testing.assert_close(view[0][0], expected)
        torch.testing.assert_close(view[0][0], view[0][0])
    torch.testing.assert_close(expected, manual, atol=0.02, rtol=0)
    for name in ("forget", "val", "test"):
        d = s.split(name)
        assert d.transform is not aug.transform
        torch.testing.assert_close(d[0][0], d[0][0])
        torch.testing.assert_close(d[0][0], eval_transform(32, (0.5,) * 3, (0.5,) * 3)(
            v2.Grayscale(3)(decode(d.source.paths[0]))))
    colour = load_rafdb(tmp_path, image_size=32, grayscale=False)
    assert type(colour) is UnlearningSplits
    torch.testing.assert_close(colour.test[0][0], eval_transform(32, (0.5,) * 3, (0.5,) * 3)(
        decode(colour.test.source.paths[0])))
    assert not torch.allclose(colour.test[0][0][0], colour.test[0][0][1])


def test_rafdb_named_folders_and_errors(tmp_path):
    names = ["Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness", "Surprise"]
    make_rafdb(tmp_path / "named", per_class_train=3, per_class_test=1, names=names)
    s = load_rafdb(tmp_path / "named", image_size=32)
    assert s.class_names[0] == "surprise"  # RAF-DB order, whatever the folder order
    assert all(s.class_names[y] == p.parent.name.lower() for p, y in zip(s.test.source.paths, s.test.labels))
    make_rafdb(tmp_path / "other", per_class_train=3, per_class_test=1, names=["b", "a"])
    assert load_rafdb(tmp_path / "other", image_size=32).class_names == ["a", "b"]
    with pytest.raises(DatasetError, match="task='age'.*pass task='emotion'"):
        load_rafdb(tmp_path / "named", task="age")
    with pytest.raises(FileNotFoundError, match="RAF-DB data_root .*missing.* does not exist"):
        load_rafdb(tmp_path / "missing")
    make_rafdb(tmp_path / "bad", per_class_train=3, per_class_test=1)
    (tmp_path / "bad" / "test" / "7").rename(tmp_path / "bad" / "test" / "8")
    with pytest.raises(DatasetError, match=r"only in train/: \['7'\], only in test/: \['8'\]"):
        load_rafdb(tmp_path / "bad")
    (tmp_path / "bad" / "test").rename(tmp_path / "bad" / "testing")
    with pytest.raises(FileNotFoundError, match="RAF-DB test folder .*test does not exist"):
        load_rafdb(tmp_path / "bad")


# --------------------------------------------------------------------------------------------
# any folder / CSV
# --------------------------------------------------------------------------------------------
def make_tree(root, people: int = 12, per_person: int = 4, classes=("cat", "dog", "owl")):
    """root/<class>/<person>_<k>.png, each person's images spread over the classes."""
    seed = 20_000
    for p in range(people):
        for k in range(per_person):
            cls = classes[(p + k) % len(classes)]
            save(pattern(seed), root / cls / f"p{p:02d}_{k}.png")
            seed += 1


def test_folder_tree_with_identities_holds_out_whole_people(tmp_path):
    make_tree(tmp_path / "faces")
    (tmp_path / "forget.txt").write_text("# people who asked\np03\n\np07\n")
    s = load_folder(tmp_path / "faces", forget=tmp_path / "forget.txt", identity_regex=r"/(p\d+)_",
                    val_frac=0.2, test_frac=0.2, image_size=32)
    assert s.class_names == ["cat", "dog", "owl"] and s.num_classes == 3
    assert set(s.identities("forget")) == {"p03", "p07"} and len(s.forget) == 8
    sets = {k: set(s.identities(k)) for k in ("retain", "forget", "val", "test")}
    for a in sets:
        for b in sets:
            assert a == b or sets[a].isdisjoint(sets[b]), (a, b)
    assert len(s.val) == 8 and len(s.test) == 8 and len(s.retain) == 24  # 2 people each
    assert all(s.class_names[y] == p.parent.name for p, y in zip(s.train.source.paths, s.labels("train")))
    again = load_folder(tmp_path / "faces", forget=tmp_path / "forget.txt",
                        identity_regex=r"/(p\d+)_", val_frac=0.2, test_frac=0.2, image_size=32)
    assert again.test.source.paths == s.test.source.paths
    assert any("held out at random" in n for n in s.info["notes"])


def test_folder_tree_with_split_folders_and_path_forget_list(tmp_path):
    for split in ("train", "val", "test"):
        make_tree(tmp_path / split, people=3, per_person=3, classes=("x", "y"))
    forget = ["train/x/p00_0.png", str(tmp_path / "train" / "y" / "p01_0.png")]
    s = load_folder(tmp_path, forget=forget, image_size=32)
    assert s.info["layout"] == "imagefolder with train/val/test"
    assert sorted(p.name for p in s.forget.source.paths) == ["p00_0.png", "p01_0.png"]
    assert (len(s.retain), len(s.val), len(s.test)) == (7, 9, 9)
    assert all(p.parts[-3] == "val" for p in s.val.source.paths)
    with pytest.raises(DatasetError, match=r"match no image: \['train/x/nope.png'\]"):
        load_folder(tmp_path, forget=["train/x/nope.png"], image_size=32)
    with pytest.raises(DatasetError, match="in the val/test split.*val/x/p00_0.png"):
        load_folder(tmp_path, forget=["val/x/p00_0.png"], image_size=32)


def test_folder_csv_with_identity_and_split_columns(tmp_path):
    recs = []
    seed = 30_000
    for i in range(30):
        split = "val" if i >= 26 else ("test" if i >= 22 else "train")
        path = f"img/{i:03d}.jpg"
        save(pattern(seed + i), tmp_path / path)
        recs.append({"Path": path, "Label": ["neutral", "smile"][i % 2], "identity": f"id{i // 2}",
                     "split": split})
    pd.DataFrame(recs).to_csv(tmp_path / "faces.csv", index=False)
    s = load_folder(tmp_path, csv="faces.csv", forget=["id0", "id1", "img/010.jpg"],
                    class_names=["smile", "neutral"], image_size=32, task="smile")
    assert s.task == "smile" and s.class_names == ["smile", "neutral"]
    assert sorted(p.name for p in s.forget.source.paths) == ["000.jpg", "001.jpg", "002.jpg",
                                                             "003.jpg", "010.jpg"]
    assert (len(s.retain), len(s.forget), len(s.val), len(s.test)) == (17, 5, 4, 4)
    assert list(s.forget.labels) == [1, 0, 1, 0, 1]
    # the CSV itself as data_root; no split column -> seeded hold-outs by identity
    pd.DataFrame(recs).drop(columns="split").to_csv(tmp_path / "nosplit.csv", index=False)
    t = load_folder(tmp_path / "nosplit.csv", forget=["id0"], val_frac=0.2, test_frac=0.2,
                    image_size=32)
    assert set(t.identities("val")).isdisjoint(set(t.identities("retain")) | {"id0"})
    assert len(t.val) == 6 and len(t.test) == 6 and t.class_names == ["neutral", "smile"]
    # no forget list: a random 20 % of the training images, whole identities
    u = load_folder(tmp_path / "nosplit.csv", forget_frac=0.2, seed=5, image_size=32)
    assert set(u.identities("forget")).isdisjoint(set(u.identities("retain")))
    assert u.info["forget_rule"].startswith("random 0.2")


def test_folder_csv_errors(tmp_path):
    save(pattern(1), tmp_path / "a.png")
    save(pattern(2), tmp_path / "b.png")
    pd.DataFrame({"file": ["a.png"], "label": ["x"]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(DatasetError, match=r"x.csv lacks the column\(s\) \['path'\]; columns "
                                           r"found: \['file', 'label'\]"):
        load_folder(tmp_path / "x.csv")
    pd.DataFrame({"path": ["a.png", "b.png", "a.png"], "label": ["x", "y", "q"]}).to_csv(
        tmp_path / "y.csv", index=False)
    with pytest.raises(DatasetError, match=r"label value\(s\) \['q'\] at line 4 of the CSV are "
                                           r"not in class_names"):
        load_folder(tmp_path / "y.csv", class_names=["x", "y"])
    pd.DataFrame({"path": ["a.png", "c.png"], "label": ["x", "y"]}).to_csv(tmp_path / "z.csv", index=False)
    with pytest.raises(FileNotFoundError, match=r"z.csv.*c.png"):
        load_folder(tmp_path / "z.csv")
    pd.DataFrame({"path": ["a.png", "b.png"], "label": ["x", "y"], "split": ["train", "holdout"]}
                 ).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(DatasetError, match=r"unknown 'split' value\(s\) \['holdout'\] in .*s.csv at line 3"):
        load_folder(tmp_path / "s.csv")
    with pytest.raises(FileNotFoundError, match="forget list .*absent.txt does not exist"):
        load_folder(tmp_path / "y.csv", forget=tmp_path / "absent.txt")
    pd.DataFrame({"path": ["a.png", "b.png"], "label": ["x", "y"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DatasetError, match="the retain split of dataset 'folder' is empty. The "
                                           "forget list"):
        load_folder(tmp_path / "t.csv", forget=["a.png"])


# --------------------------------------------------------------------------------------------
# load_splits and checkpoints
# --------------------------------------------------------------------------------------------
def test_load_splits_switches_dataset_by_parameters(tmp_path):
    assert DATASETS == ("synthetic", "mufac", "rafdb", "folder")
    make_mufac(tmp_path / "mufac", train_fams=4, val_fams=1, test_fams=1)
    make_rafdb(tmp_path / "rafdb", per_class_train=3, per_class_test=1)
    smoke = get_profile("smoke")  # image_size 32; its other data keys are synthetic knobs
    m = load_splits("mufac", task="age", data_root=tmp_path / "mufac", profile=smoke, seed=7,
                    forget_size=5)
    assert m.image_size == 32 and len(m.forget) == 5
    mi = load_splits("mufac", task="age", data_root=tmp_path / "mufac", profile=smoke,
                     split="identity", forget_frac=0.25, split_seed=1)
    assert mi.info["split"] == "identity" and mi.info["seed"] == 1
    r = load_splits("rafdb", task="emotion", data_root=tmp_path / "rafdb", profile=None)
    assert r.image_size == 128 and r.info["seed"] == 42
    r2 = load_splits("rafdb", task="emotion", data_root=tmp_path / "rafdb", profile=smoke, seed=3)
    assert r2.forget.source.paths == load_rafdb(tmp_path / "rafdb", image_size=32).forget.source.paths
    with pytest.raises(FileNotFoundError, match="set data_root"):
        load_splits("mufac", task="age", data_root=None)
    with pytest.raises(DatasetError, match="pass task='emotion'"):
        load_splits("rafdb", task="age", data_root=tmp_path / "rafdb")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['forget_sise'\]"):
        load_splits("mufac", data_root=tmp_path / "mufac", forget_sise=5)
    with pytest.raises(ValueError, match="unknown dataset 'celeba'"):
        load_splits("celeba", data_root=tmp_path)


def test_checkpoint_class_count_mismatch_names_path_and_counts(tmp_path):
    path = save_checkpoint(build_model(8), tmp_path / "age.pt")
    with pytest.raises(CheckpointError, match=r"age.pt was trained for 8 classes.*but 7 classes"):
        load_checkpoint(path, num_classes=7)
