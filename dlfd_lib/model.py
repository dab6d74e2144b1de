"""The paper's face classifier: ResNet18 (random init) + a three-layer MLP head.

Reference: Choi & Na, *Distribution-Level Feature Distancing for Machine Unlearning*, AAAI 2025
(arXiv 2409.14747), and the model of their released code:

    ResNet18 with fc = Identity                    x (B, 3, H, W) -> (B, 512)   "backbone"
    Linear(512, 256) - ReLU - Dropout(0.5)         features.0 / .1 / .2
    Linear(256, 128) - ReLU - Dropout(0.5)         features.3 / .4 / .5      -> (B, 128) "penultimate"
    Linear(128, C)                                 features.6                -> (B, C)   "logits"

The module names ``base_model`` and ``features`` are kept so that a state dict of this model
has exactly the keys of the authors' released ``.pth`` files (``base_model.<resnet18 keys
without fc>``, ``features.0.*``, ``features.3.*``, ``features.6.*``), which therefore load
directly. :func:`load_checkpoint` reads those plain state dicts as well as the kit's own files
and explains any mismatch in plain words.

The ResNet18 is written out here (:class:`ResNet18`) rather than taken from torchvision: the same
modules, names, initialisation and random draws as ``torchvision.models.resnet18(weights=None)``
(a seed gives bit-identical weights, ``tests/test_model_train.py``), without importing
torchvision, whose import pulls in torch's compiler stack (~5 s per process here: every notebook
kernel and every worker paid it).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from . import __version__
from .utils import atomic_write_bytes, nonfinite_tensors, resolve_device, to_jsonable

FEATURE_LAYERS = ("backbone", "penultimate", "logits")
KIT_FORMAT = "dlfd-kit-checkpoint/1"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (a 1x1 convolution + batch norm
    where the shape changes): ResNet18's building block."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet18(nn.Module):
    """ResNet18 (He et al. 2016) as torchvision builds it: a 7x7 stride-2 stem and max pool, four
    stages of two :class:`BasicBlock` s (64, 128, 256, 512 channels), global average pooling and
    ``fc``. Construction draws random numbers in torchvision's order – the 1000-way ``fc`` is
    built (and its draws made) before the He-normal (fan-out) re-initialisation of every
    convolution – so one seed gives torchvision's weights exactly."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths, in_ch = (64, 128, 256, 512), 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(in_ch, width, stride), BasicBlock(width, width)))
            in_ch = width
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc: nn.Module = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class FaceClassifier(nn.Module):
    """ResNet18 backbone + MLP head; ``forward`` returns logits."""

    def __init__(self, num_classes: int, dropout: float = 0.5):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes
        self.base_model = ResNet18()  # random init, as the paper
        self.base_model.fc = nn.Identity()  # (B, 512) pooled features
        self.features = nn.Sequential(
            nn.Linear(512, 256), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    # ---- forward passes -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.base_model(x))  # (B, C)

    def forward_features(self, x: torch.Tensor, layer: str = "penultimate"
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass returning ``(features, logits)``; ``layer`` picks the features:
        ``"backbone"`` (512-d ResNet output), ``"penultimate"`` (128-d input of the last
        Linear) or ``"logits"`` (the C-d output itself)."""
        if layer not in FEATURE_LAYERS:
            raise ValueError(f"unknown feature layer {layer!r}; choose one of {FEATURE_LAYERS}")
        h = self.base_model(x)  # (B, 512)
        if layer == "backbone":
            return h, self.features(h)
        pen = self.features[:6](h)  # (B, 128)
        logits = self.features[6](pen)  # (B, C)
        return (logits if layer == "logits" else pen), logits


def build_model(num_classes: int, device: str | torch.device = "cpu") -> FaceClassifier:
    """A fresh FaceClassifier on ``device`` (channels_last on every device: it is the faster
    memory format for these convolutions on CUDA and on this kind of CPU)."""
    model = FaceClassifier(num_classes)
    return model.to(device=resolve_device(device), memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with the reason in plain words."""


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``{"format", "state_dict", "meta"}`` atomically (a crash never leaves half a file).
    ``meta`` should hold the config, seed and metrics; the kit version is added.

    A model with a NaN or infinite weight (a diverged run) is refused with
    ``FloatingPointError``: nothing non-finite is ever written, so nothing non-finite is reused.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = nonfinite_tensors(state)
    if bad:
        raise FloatingPointError(
            f"refusing to save {path}: {len(bad)} weight tensor(s) of the model are not finite "
            f"(NaN or infinity), e.g. {bad[:3]}. The run that made it diverged; lower its "
            f"learning rate (or step size) and run it again.")
    meta = to_jsonable({"kit_version": __version__, "num_classes": _num_classes(state), **(meta or {})})
    payload = {"format": KIT_FORMAT, "state_dict": state, "meta": meta}
    return atomic_write_bytes(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a kit checkpoint or a plain state dict (the authors' files) on the CPU and return
    ``(state_dict, meta)``; ``meta`` is empty for plain state dicts."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".pth", ".bin"))
        hint = (f"; it holds {', '.join(inside[:5])}{' ...' if len(inside) > 5 else ''}"
                if inside else "")
        raise CheckpointError(f"checkpoint {path} is a directory, not a checkpoint file: pass the "
                              f"path of the .pt/.pth file itself{hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path, or train the "
                              f"model first (notebook 01)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc).lower().replace(" ", "_"):
            raise CheckpointError(_corrupt(path, exc)) from exc
        raise CheckpointError(
            f"{path} is not a state dict: it is a pickle of Python objects (for example a whole "
            f"nn.Module saved with torch.save(model, path)), and the kit refuses to load arbitrary "
            f"pickles for safety, because unpickling can run any code. If you trust the file, "
            f"convert it once to a plain state dict in Python: "
            f"obj = torch.load({str(path)!r}, weights_only=False); "
            f"torch.save(obj.state_dict() if hasattr(obj, 'state_dict') else obj, 'weights.pt'); "
            f"then load weights.pt.") from exc
    except Exception as exc:
        raise CheckpointError(_corrupt(path, exc)) from exc
    if isinstance(obj, dict) and obj.get("format") == KIT_FORMAT:
        _refuse_nonfinite(path, obj["state_dict"])
        return obj["state_dict"], dict(obj.get("meta", {}))
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # common {"state_dict": ...} wrapper
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors: "
                              f"save the model with torch.save(model.state_dict(), path)")
    # weights saved from nn.DataParallel carry a "module." prefix
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    _refuse_nonfinite(path, obj)
    return obj, {}


def _corrupt(path: Path, exc: BaseException) -> str:
    return (f"could not read checkpoint {path}: it is corrupt, truncated or not a PyTorch file "
            f"({type(exc).__name__}: {str(exc)[:200]}). Delete it and train again, or download "
            f"it again.")


def _refuse_nonfinite(path: Path, state: dict[str, torch.Tensor]) -> None:
    bad = nonfinite_tensors(state)
    if bad:
        raise CheckpointError(
            f"checkpoint {path} holds non-finite weights (NaN or infinity in {len(bad)} tensors, "
            f"e.g. {bad[:3]}): the run that wrote it diverged. Delete it and train or unlearn "
            f"again with a lower learning rate.")


def _num_classes(state: dict[str, torch.Tensor]) -> int | None:
    w = state.get("features.6.weight")
    return None if w is None else int(w.shape[0])


def load_checkpoint(path: str | Path, num_classes: int | None = None,
                    device: str | torch.device = "cpu") -> tuple[FaceClassifier, dict[str, Any]]:
    """Build a FaceClassifier and load ``path`` into it, on any device.

    ``num_classes`` defaults to what the checkpoint holds; if given and different, the error
    says so. Keys and shapes are compared one by one so that a foreign or damaged checkpoint
    is explained rather than half-loaded.
    """
    state, meta = read_checkpoint(path)
    found = _num_classes(state)
    if found is None:
        raise CheckpointError(
            f"{path} has no 'features.6.weight' (the last Linear of the MLP head), so it is not a "
            f"DLFD ResNet18+MLP checkpoint. Keys look like: {sorted(state)[:5]} ...")
    if num_classes is not None and num_classes != found:
        raise CheckpointError(
            f"{path} was trained for {found} classes (features.6.weight has shape "
            f"{tuple(state['features.6.weight'].shape)}) but {num_classes} classes were asked for. "
            f"Use the dataset/task the checkpoint was trained on, or pass num_classes={found}.")
    model = FaceClassifier(num_classes or found)
    load_state_dict_explained(model, state, source=str(path))
    model.to(device=resolve_device(device), memory_format=torch.channels_last)
    return model, meta


def load_state_dict_explained(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"):
    """``model.load_state_dict(state)`` with every missing key, unexpected key and shape mismatch
    listed in plain words before anything is loaded."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} weights the model needs are missing, e.g. {missing[:4]}")
    if unexpected:
        hint = " (an 'fc.' key means the ResNet's own classifier was kept; the paper's model " \
               "replaces it by the MLP head)" if any(".fc." in k or k.startswith("fc.") for k in unexpected) else ""
        problems.append(f"{len(unexpected)} weights are not part of the model, e.g. {unexpected[:4]}{hint}")
    if shapes:
        problems.append(f"{len(shapes)} weights have the wrong shape: " + "; ".join(shapes[:4]))
    if problems:
        raise CheckpointError(f"{source} does not fit the ResNet18+MLP model: " + ". ".join(problems) + ".")
    model.load_state_dict(state)
