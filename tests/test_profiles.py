"""The profiles (dlfd_lib/profiles.py): one name picks every size, and one Profile object
carries the settings and the name together."""
import copy
import json

import pytest

from dlfd_lib.profiles import PROFILE_NAMES, PROFILES, Profile, get_profile, profile_name


def test_unknown_profile_names_the_valid_ones():
    with pytest.raises(ValueError) as err:
        get_profile("fast")
    for name in ("smoke", "quick", "paper"):
        assert name in str(err.value)


def test_get_profile_returns_a_deep_copy():
    size = PROFILES["quick"]["data"]["image_size"]
    prof = get_profile("quick")
    prof["data"]["image_size"] = 1
    prof["train"]["epochs"] = -1
    assert PROFILES["quick"]["data"]["image_size"] == size != 1
    assert get_profile("quick")["train"]["epochs"] == PROFILES["quick"]["train"]["epochs"]


def test_profiles_have_the_same_settings():
    def keys(d, prefix=""):
        return {k2 for k, v in d.items()
                for k2 in (keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k})}
    assert set(PROFILES) == {"smoke", "quick", "paper"}
    shapes = {name: keys(p) for name, p in PROFILES.items()}
    assert len({frozenset(s) for s in shapes.values()}) == 1, shapes
    for name, p in PROFILES.items():
        assert p["train"]["schedule"] in {"onecycle", "cosine"}, name
        assert 0 < p["data"]["forget_frac"] < 1, name


def test_a_profile_reads_like_its_settings_dict_and_carries_its_name():
    prof = get_profile("smoke")
    assert isinstance(prof, Profile) and prof.name == "smoke"
    assert prof == PROFILES["smoke"] and dict(prof) == PROFILES["smoke"]  # name is not a setting
    assert prof.train is prof["train"] and prof.get("train") is prof.train
    assert prof.get("nope", 3) == 3 and "name" not in prof and list(prof) == list(PROFILES["smoke"])
    assert json.loads(json.dumps(prof.as_dict())) == PROFILES["smoke"]
    with pytest.raises(KeyError, match="has no setting 'nope'"):
        prof["nope"]
    edited = copy.deepcopy(prof)
    edited.train["epochs"] = 1
    assert edited.name == "smoke" and edited != prof and prof.train["epochs"] == PROFILES["smoke"]["train"]["epochs"]
    assert get_profile(edited) is edited  # a Profile passes through unchanged
    assert tuple(PROFILES) == PROFILE_NAMES and set(Profile.sections()) == set(PROFILES["smoke"])


def test_profile_name_accepts_a_profile_or_a_name_and_rejects_unknown_ones():
    assert profile_name(get_profile("paper")) == "paper" and profile_name("quick") == "quick"
    with pytest.raises(ValueError, match="unknown profile 'fast'; valid profiles: smoke, quick, paper"):
        profile_name("fast")


def test_run_notebooks_takes_a_profile_name_not_an_object():
    from dlfd_lib.pipeline import run_notebooks
    with pytest.raises(TypeError, match="takes a profile's name"):
        run_notebooks(profile=get_profile("smoke"), notebooks=[])
