"""The unlearning registry: methods as hyperparameter dataclasses, flat names checked against
them, profiles, search spaces, the step callback (fast, CPU)."""
import copy
import dataclasses
from typing import ClassVar

import pandas as pd
import pytest
import torch

from dlfd_lib.model import build_model
from dlfd_lib.optim import SGD_DEFAULTS
from dlfd_lib.unlearn import (PROFILE_NAMES, UnlearnResult, available_methods, get_method,
                              method_defaults, method_search_space, method_strength, register,
                              unlearn)
from dlfd_lib.unlearn import registry as registry_mod


@dataclasses.dataclass
class _A:
    a: float = 1.0


def _fn(model, splits, hp, *, device, seed, progress):
    return [], {}


def test_registry_lists_validates_and_does_not_mutate(splits, model):
    assert "dlfd" in available_methods()
    assert set(PROFILE_NAMES) == set(__import__("dlfd_lib.profiles", fromlist=["PROFILES"]).PROFILES)
    paper = method_defaults("dlfd", "paper")
    assert (paper["lr"], paper["w_f"], paper["w_t0"], paper["w_t1"], paper["K"], paper["alpha"],
            paper["forget_threshold"], paper["max_fs"], paper["batch_size"]) == \
        (0.008, 3.0, 0.0, 1.0, 15, 0.4, 0.15, 0.09, 32)
    assert paper["momentum"] == 0.9 and paper["weight_decay"] == 5e-4 and paper["eps"] is None
    with pytest.raises(KeyError, match="dlfd"):
        unlearn("dlfdd", model, splits)
    with pytest.raises(TypeError, match="valid:.*alpha"):
        unlearn("dlfd", model, splits, profile="smoke", device="cpu", alhpa=0.1)
    with pytest.raises(ValueError, match="profile"):
        method_defaults("dlfd", "huge")

    @dataclasses.dataclass
    class Broken:
        a: int = 1
        PRESETS: ClassVar[dict] = {"smoke": {"nope": 1}}

    with pytest.raises(ValueError, match="unknown hyperparameters"):
        register("broken", Broken)(_fn)
    with pytest.raises(TypeError, match="must accept"):
        register("broken", _A)(lambda model, splits, hp, *, device: None)
    assert "broken" not in available_methods()
    before = copy.deepcopy(model.state_dict())
    res = unlearn("dlfd", model, splits, profile="smoke", device="cpu", seed=0, max_steps=2)
    assert isinstance(res, UnlearnResult) and res.model is not model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"unlearn() changed the caller's {k}"
    m, hist = res  # unpacks as (model, history)
    assert m is res.model and isinstance(hist, pd.DataFrame)
    assert res.info["method"] == "dlfd" and res.info["seconds"] > 0
    mine = copy.deepcopy(model)
    assert unlearn("dlfd", mine, splits, profile="smoke", device="cpu", max_steps=1, inplace=True).model is mine


def test_a_method_is_a_dataclass_its_presets_and_a_function():
    with pytest.raises(TypeError, match="dataclass"):
        register("_not_a_dataclass", dict)(_fn)

    @dataclasses.dataclass
    class NoDefault:
        a: float

    with pytest.raises(TypeError, match="needs a default"):
        register("_no_default", NoDefault)(_fn)

    @dataclasses.dataclass
    class Checked:
        a: float = 1.0
        PRESETS: ClassVar[dict] = {"smoke": {"a": -1.0}}

        def __post_init__(self):
            if not self.a > 0:
                raise ValueError(f"a={self.a} must be > 0")

    with pytest.raises(ValueError, match="a=-1.0 must be > 0"):  # presets are checked at import
        register("_checked", Checked)(_fn)
    with pytest.raises(ValueError, match="the paper's values are the field defaults"):
        register("_paper_preset", dataclasses.make_dataclass(
            "P", [("a", float, 1.0)], namespace={"PRESETS": {"paper": {"a": 2.0}}}))(_fn)
    with pytest.raises(ValueError, match="unknown profile"):
        register("_bad_profile", dataclasses.make_dataclass(
            "P", [("a", float, 1.0)], namespace={"PRESETS": {"huge": {"a": 2.0}}}))(_fn)
    assert not {"_not_a_dataclass", "_no_default", "_checked", "_paper_preset", "_bad_profile"} & set(available_methods())


def test_flat_names_build_the_dataclass_and_unknown_names_say_method_name_and_valid(splits, model):
    got = {}

    @dataclasses.dataclass
    class Hp:
        a: float = 1.0
        b: int = 2
        PRESETS: ClassVar[dict] = {"smoke": {"b": 3}}

        def __post_init__(self):
            if self.b < 0:
                raise ValueError(f"b={self.b} must be >= 0")

    @register("_flat", Hp)
    def flat(model, splits, hp, *, device, seed, progress):
        got["hp"] = hp
        return [], {}

    try:
        assert method_defaults("_flat", "smoke") == {"a": 1.0, "b": 3}
        assert method_defaults("_flat", "quick") == {"a": 1.0, "b": 2}  # no preset: the defaults
        res = unlearn("_flat", model, splits, profile="smoke", device="cpu", a=0.5)
        assert got["hp"] == Hp(a=0.5, b=3) and res.info["hparams"] == {"a": 0.5, "b": 3}
        with pytest.raises(TypeError) as err:
            unlearn("_flat", model, splits, profile="smoke", device="cpu", c=1)
        msg = str(err.value)
        assert "'_flat'" in msg and "['c']" in msg and "valid: a, b" in msg
        got.clear()
        with pytest.raises(ValueError, match="b=-1 must be >= 0"):
            unlearn("_flat", model, splits, profile="smoke", device="cpu", b=-1)
        assert not got, "a value the dataclass rejects must stop the run before the method starts"
    finally:
        registry_mod._METHODS.pop("_flat", None)


def test_every_method_declares_its_settings_in_one_dataclass():
    for name in available_methods():
        method = get_method(name)
        cls = method.hparams_cls
        assert dataclasses.is_dataclass(cls), name
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        assert method.hparams == fields, name
        assert method_defaults(name, "paper") == fields, f"{name}: the paper's values are the field defaults"
        for profile in PROFILE_NAMES:  # every preset builds a valid instance
            assert dataclasses.asdict(cls(**method_defaults(name, profile))) == method_defaults(name, profile)
        if "momentum" in fields:  # the kit's optimiser settings, written once (dlfd_lib.optim)
            assert fields["momentum"] == SGD_DEFAULTS.momentum, name
        assert "max_steps" in fields, f"{name} has no per-epoch batch cap max_steps"


def test_all_registered_with_profiles():
    baselines = ("finetune", "cf_k", "eu_k", "neggrad", "neggrad_plus")
    assert set(baselines) <= set(available_methods())
    for name in baselines:
        for profile in ("smoke", "quick", "paper"):
            hp = method_defaults(name, profile)
            assert hp["momentum"] == 0.9 and hp["weight_decay"] == 5e-4
    assert method_defaults("cf_k", "paper")["k"] == 3 and method_defaults("eu_k", "paper")["k"] == 3
    assert 0 < method_defaults("neggrad_plus", "paper")["alpha"] < 1
    for name in ["unsir", "bad_teacher", "scrub", "random_label", "salun"]:
        assert name in available_methods()
        for profile in ("smoke", "quick", "paper"):
            assert method_defaults(name, profile)
    assert method_defaults("salun", "paper")["mask_ratio"] == 0.5
    assert method_defaults("bad_teacher", "paper")["retain_frac"] == 0.3
    assert method_defaults("scrub", "paper")["temperature"] == 4.0


def test_the_training_recipes_take_the_shared_optimiser_settings():
    from dlfd_lib.profiles import PROFILES
    from dlfd_lib.train import TrainConfig
    assert (SGD_DEFAULTS.momentum, SGD_DEFAULTS.weight_decay) == (0.9, 5e-4)
    assert (TrainConfig().momentum, TrainConfig().weight_decay) == (0.9, 5e-4)
    for p in PROFILES.values():
        assert (p["train"]["momentum"], p["train"]["weight_decay"]) == (0.9, 5e-4)


def test_every_method_declares_a_search_space_and_a_strength():
    for name in available_methods():
        space, knob = method_search_space(name), method_strength(name)
        assert space, f"{name} declares no search space"
        assert knob is not None and len(knob[1]) >= 2
    assert method_search_space("dlfd")["threshold_mode"] == "relative"
    with pytest.raises(ValueError, match="low < high"):
        register("_bad_space", dataclasses.make_dataclass(
            "S", [("a", float, 1.0)], namespace={"SEARCH_SPACE": {"a": ("float", 1.0, 0.5)}}))(_fn)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        register("_bad_space", dataclasses.make_dataclass(
            "S", [("a", float, 1.0)], namespace={"SEARCH_SPACE": {"b": ("int", 1, 3)}}))(_fn)
    with pytest.raises(ValueError, match="STRENGTH"):
        register("_bad_space", dataclasses.make_dataclass(
            "S", [("a", float, 1.0)], namespace={"STRENGTH": ("b", (1, 2))}))(_fn)
    assert "_bad_space" not in available_methods()


# ---------------------------------------------------------------------------------------------
# the step callback: called at the right steps, and invisible to the method
def _weights(model):
    return torch.cat([p.detach().flatten().cpu() for p in model.parameters()])


@pytest.mark.parametrize("name, hp", [("neggrad", {"epochs": 4}), ("dlfd", {})])
def test_callback_steps_and_no_effect_on_result(splits, name, hp):
    torch.manual_seed(0)
    model = build_model(splits.num_classes)
    calls = []

    def cb(m, step, final):
        modes = [x.training for x in m.modules()]
        m.eval()
        with torch.no_grad():
            m(torch.zeros(2, 3, 32, 32))
        torch.rand(3)  # a callback that draws random numbers must not change the method's stream
        for x, was in zip(m.modules(), modes):
            x.training = was
        calls.append((step, final))

    plain = unlearn(name, model, splits, profile="smoke", device="cpu", seed=3, progress=False, **hp)
    watched = unlearn(name, model, splits, profile="smoke", device="cpu", seed=3, progress=False,
                      callback=cb, callback_every=2, **hp)
    assert torch.equal(_weights(plain.model), _weights(watched.model))
    steps = [s for s, f in calls if not f]
    assert steps[0] == 0 and all(s % 2 == 0 for s in steps) and steps == sorted(steps)
    assert calls[-1][1] is True and sum(f for _, f in calls) == 1
    total = calls[-1][0]
    assert total >= 2 and steps[-1] == total - total % 2
    assert watched.info["seconds"] > 0


def test_callback_every_must_be_positive(splits):
    with pytest.raises(ValueError, match="callback_every"):
        unlearn("neggrad", build_model(splits.num_classes), splits, profile="smoke", device="cpu",
                callback=lambda *a: None, callback_every=0)


def test_the_documented_example_method_registers_and_runs(splits, model):
    """The example of docs/adding-a-method.md (the README links to it) is a working method file."""
    import pathlib
    import re
    import sys
    import types
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "adding-a-method.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    name = "dlfd_lib.unlearn._readme_example"
    module = types.ModuleType(name)
    module.__package__ = "dlfd_lib.unlearn"
    sys.modules[name] = module
    try:
        exec(compile(code, "docs/adding-a-method.md", "exec"), module.__dict__)
        assert method_defaults("my_method", "smoke")["epochs"] == 1
        res = unlearn("my_method", model, splits, profile="smoke", device="cpu", progress=False)
        h = res.history
        assert list(h["epoch"]) == [1] and {"ce_retain", "loss", "step", "lr"} <= set(h.columns)
        assert res.info["steps"] == h["step"].iloc[-1] >= 1
        with pytest.raises(ValueError, match="lr=-1"):
            unlearn("my_method", model, splits, profile="smoke", device="cpu", lr=-1)
    finally:
        registry_mod._METHODS.pop("my_method", None)
        sys.modules.pop(name, None)


def test_notebook_overrides_are_flat_names_checked_against_the_dataclass():
    from dlfd_lib.pipeline import ParameterError, select_notebooks, validate_parameters
    paths = select_notebooks(None)
    validate_parameters(paths, {"dlfd_overrides": {"max_steps": 2, "K": 3},
                                "curve_overrides": {"neggrad": {"max_steps": 2}}}, "smoke")
    with pytest.raises(ParameterError) as err:
        validate_parameters(paths, {"dlfd_overrides": {"nope": 1},
                                    "curve_overrides": {"neggrad": {"alhpa": 1}}}, "smoke")
    msg = str(err.value)
    dlfd_fields = sorted(f.name for f in dataclasses.fields(get_method("dlfd").hparams_cls))
    assert "dlfd_overrides: unknown key 'nope'; accepted keys: " + ", ".join(dlfd_fields) in msg
    assert "curve_overrides['neggrad']: unknown key 'alhpa'" in msg
