"""Model key layout, checkpoints and training."""
import numpy as np
import pytest
import torch

from dlfd_lib.model import CheckpointError, build_model, load_checkpoint, save_checkpoint
from dlfd_lib.train import TrainConfig, train_model, train_or_load

from helpers import tiny_splits


def expected_authors_keys(num_classes: int) -> dict[str, tuple]:
    """The released checkpoints' keys and shapes, built from the paper's description: a
    torchvision ResNet18 without its fc under ``base_model.`` and the three Linear layers of
    the MLP head at ``features.0/3/6``."""
    keys = {}

    def conv(name, cout, cin, k):
        keys[f"base_model.{name}.weight"] = (cout, cin, k, k)

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"base_model.{name}.{p}"] = (c,)
        keys[f"base_model.{name}.num_batches_tracked"] = ()

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for layer, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            first_in = cin if block == 0 else cout
            conv(f"{prefix}.conv1", cout, first_in, 3)
            bn(f"{prefix}.bn1", cout)
            conv(f"{prefix}.conv2", cout, cout, 3)
            bn(f"{prefix}.bn2", cout)
            if block == 0 and layer > 1:  # stride-2 shortcut
                conv(f"{prefix}.downsample.0", cout, cin, 1)
                bn(f"{prefix}.downsample.1", cout)
        cin = cout
    for idx, (o, i) in zip((0, 3, 6), ((256, 512), (128, 256), (num_classes, 128))):
        keys[f"features.{idx}.weight"] = (o, i)
        keys[f"features.{idx}.bias"] = (o,)
    return keys


def test_state_dict_matches_authors_layout():
    model = build_model(8)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected_authors_keys(8)


def test_features_and_logits_one_pass():
    model = build_model(7).eval()
    x = torch.randn(3, 3, 64, 64)
    for layer, dim in (("backbone", 512), ("penultimate", 128), ("logits", 7)):
        feats, logits = model.forward_features(x, layer)
        assert feats.shape == (3, dim) and logits.shape == (3, 7)
        torch.testing.assert_close(logits, model(x))
    with pytest.raises(ValueError, match="unknown feature layer"):
        model.forward_features(x, "conv5")


def test_checkpoint_roundtrip_kit_and_plain(tmp_path):
    model = build_model(8)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    kit = save_checkpoint(model, tmp_path / "kit.pt", meta={"seed": 3, "note": np.float32(0.5)})
    loaded, meta = load_checkpoint(kit)
    assert meta["seed"] == 3 and meta["num_classes"] == 8 and "kit_version" in meta
    torch.testing.assert_close(loaded.eval()(x), model(x))
    # the authors' files are plain state dicts saved from CUDA models
    torch.save(model.state_dict(), tmp_path / "authors.pth")
    loaded, meta = load_checkpoint(tmp_path / "authors.pth", num_classes=8)
    assert meta == {}
    torch.testing.assert_close(loaded.eval()(x), model(x))
    # DataParallel prefix
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pth")
    load_checkpoint(tmp_path / "dp.pth")
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temporary file"


def test_checkpoint_errors_are_explained(tmp_path):
    model = build_model(8)
    path = save_checkpoint(model, tmp_path / "age.pt")
    with pytest.raises(CheckpointError, match=r"trained for 8 classes.*7 classes"):
        load_checkpoint(path, num_classes=7)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(corrupt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    state = model.state_dict()
    state["base_model.fc.weight"] = torch.zeros(1000, 512)
    del state["base_model.conv1.weight"]
    torch.save(state, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match=r"missing.*conv1.*not part of the model.*fc"):
        load_checkpoint(tmp_path / "foreign.pth")


def test_short_training_lowers_the_loss():
    splits = tiny_splits()
    model = build_model(splits.num_classes)
    cfg = TrainConfig(epochs=6, batch_size=12, lr=0.02, schedule="onecycle", augment=False)
    hist = train_model(model, splits, on="train", cfg=cfg, seed=0, progress=False)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert len(hist) == 6 and all(np.isfinite(h["val_acc"]) for h in hist)


def test_train_or_load_reuses_and_is_deterministic(tmp_path):
    splits = tiny_splits(n_per_class=4)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.01, schedule="cosine")
    m1, meta1 = train_or_load("retrained", splits, cfg, seed=5, ckpt_dir=tmp_path, progress=False)
    assert not meta1["reused"] and len(list(tmp_path.glob("*.pt"))) == 1
    m2, meta2 = train_or_load("retrained", splits, cfg, seed=5, ckpt_dir=tmp_path, progress=False)
    assert meta2["reused"] and meta2["history"] == meta1["history"]
    m3, meta3 = train_or_load("retrained", splits, cfg, seed=5, ckpt_dir=tmp_path, force=True, progress=False)
    assert not meta3["reused"]
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values()):
        assert torch.equal(a, b), "same seed must give the same weights on the CPU"
    with pytest.raises(ValueError, match="role"):
        train_or_load("student", splits, cfg, ckpt_dir=tmp_path)


def test_diverging_training_stops_with_clear_error():
    splits = tiny_splits(n_per_class=4)
    model = build_model(splits.num_classes)
    with torch.no_grad():
        model.features[6].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="diverged"):
        train_model(model, splits, cfg=TrainConfig(epochs=1, batch_size=8), progress=False)


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5, 9])
def test_onecycle_schedule_works_on_a_few_batches(steps):
    from dlfd_lib.train import TrainConfig, make_optimizer
    layer = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(layer, TrainConfig(schedule="onecycle", lr=0.1, warmup_frac=0.25), steps)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(0 <= lr <= 0.1 + 1e-9 for lr in lrs) and max(lrs) > 0.05


def test_the_kits_resnet18_is_torchvisions():
    """The kit writes ResNet18 out (torchvision's import costs ~5 s per process); one seed must
    give torchvision's resnet18(weights=None) exactly – weights, buffers, train- and eval-mode
    outputs – and the random-number stream must be left where torchvision leaves it."""
    torchvision = pytest.importorskip("torchvision")
    from dlfd_lib.model import ResNet18

    torch.manual_seed(3)
    ours = ResNet18()
    after_ours = torch.rand(3)
    torch.manual_seed(3)
    ref = torchvision.models.resnet18(weights=None)
    after_ref = torch.rand(3)
    assert torch.equal(after_ours, after_ref), "construction drew a different number of random values"
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(4, 3, 40, 40)
    for mode in (True, False):
        ours.train(mode)
        ref.train(mode)
        with torch.no_grad():
            assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_importing_the_kit_does_not_import_torchvision():
    """torchvision's import pulls in torch's compiler (~5 s); the kit imports it only where its
    per-image (streaming) transforms are actually built."""
    import subprocess
    import sys
    code = ("import sys, dlfd_lib.model, dlfd_lib.data, dlfd_lib.train, dlfd_lib.metrics, dlfd_lib.unlearn, "
            "dlfd_lib.benchmark, dlfd_lib.embedding; print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cpu_bf16_autocast_only_where_the_cpu_has_native_bf16(monkeypatch):
    """On an AVX2-only CPU bf16 autocast is emulated and ~10x slower than float32: the kit's
    autocast must fall back to float32 there, keep bf16 where oneDNN has native kernels, and
    honour the DLFD_CPU_BF16 override (a bad value is refused with the variable's name)."""
    from dlfd_lib import utils

    cpu = torch.device("cpu")
    model = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    monkeypatch.delenv(utils.CPU_BF16_ENV, raising=False)
    for native in (False, True):
        monkeypatch.setattr(utils, "_onednn_bf16", lambda native=native: native)
        assert utils.cpu_bf16_supported() is native and utils.amp_enabled(cpu) is native
        with utils.autocast(cpu, True):
            out = model(x)
        assert out.dtype == (torch.bfloat16 if native else torch.float32)
        with utils.autocast(cpu, False):  # disabled is disabled, whatever the CPU
            assert model(x).dtype == torch.float32
    assert utils.amp_enabled("cuda", True) and not utils.amp_enabled("cuda", False)
    monkeypatch.setattr(utils, "_onednn_bf16", lambda: False)
    monkeypatch.setenv(utils.CPU_BF16_ENV, "1")
    assert utils.amp_enabled(cpu)
    monkeypatch.setattr(utils, "_onednn_bf16", lambda: True)
    monkeypatch.setenv(utils.CPU_BF16_ENV, "0")
    assert not utils.amp_enabled(cpu)
    monkeypatch.setenv(utils.CPU_BF16_ENV, "yes")
    with pytest.raises(ValueError, match="DLFD_CPU_BF16"):
        utils.amp_enabled(cpu)
