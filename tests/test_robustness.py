"""Faults a user runs into, each with the message or the behaviour the kit promises (issue 12).

Non-finite unlearning, checkpoints that must not be used, stale temporary files and
permissions, data fingerprints that force a retrain, paths outside the data root, parameter
validation, and the notebook runner's timeouts and interruptions.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlfd_lib.model import CheckpointError, build_model, load_checkpoint, save_checkpoint
from dlfd_lib.unlearn import available_methods, unlearn
from dlfd_lib.utils import atomic_write_bytes, save_json


# ------------------------------------------------------------------ 4. non-finite unlearning

#: a learning rate far past divergence for every method (UNSIR has two)
DIVERGING = {"unsir": {"impair_lr": 1e12, "repair_lr": 1e12}}


@pytest.mark.parametrize("method", available_methods())
def test_every_method_stops_with_floating_point_error_naming_it_and_the_step(method, splits, model):
    hp = DIVERGING.get(method, {"lr": 1e12})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError) as err:
        unlearn(method, model, splits, profile="smoke", device="cpu", progress=False, **hp)
    msg = str(err.value)
    assert f"unlearning method {method!r}" in msg, msg
    assert "step" in msg, msg
    if method == "salun":
        assert "random-label" not in msg.lower(), msg
    # the caller's model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nonfinite_weights_are_never_saved_and_never_loaded(tmp_path, model):
    bad = build_model(3)
    with torch.no_grad():
        bad.features[6].weight[0, 0] = float("nan")
    path = tmp_path / "bad.pt"
    with pytest.raises(FloatingPointError, match="not finite"):
        save_checkpoint(bad, path)
    assert not path.exists() and not list(tmp_path.iterdir())
    # a file written some other way (an older kit) is refused on loading, with the reason
    state = {k: v.clone() for k, v in bad.state_dict().items()}
    torch.save({"format": "dlfd-kit-checkpoint/1", "state_dict": state, "meta": {}}, path)
    with pytest.raises(CheckpointError, match="non-finite weights.*features.6.weight"):
        load_checkpoint(path)
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(tmp_path / "plain.pt")


# ------------------------------------------------------------------ 2. data fingerprints

def _image(seed: int, size: int = 32):
    from PIL import Image
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def _folder_csv(root: Path) -> tuple[Path, list[dict]]:
    """A CSV dataset: 10 people x 3 photos, 2 classes, people 8 and 9 held out as val / test."""
    import pandas as pd
    rows = []
    for person in range(10):
        for k in range(3):
            rel = f"img/p{person}_{k}.png"
            (root / "img").mkdir(parents=True, exist_ok=True)
            _image(person * 10 + k).save(root / rel)
            split = "val" if person == 8 else "test" if person == 9 else "train"
            rows.append({"path": rel, "label": str((person + k) % 2), "identity": f"p{person}",
                         "split": split})
    csv = root / "faces.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv, rows


def _write_rows(csv: Path, rows: list[dict]) -> None:
    import pandas as pd
    pd.DataFrame(rows).to_csv(csv, index=False)


def test_a_changed_label_image_or_forget_entry_forces_a_retrain(tmp_path):
    from dlfd_lib.data import load_folder
    from dlfd_lib.train import TrainConfig, train_or_load
    csv, rows = _folder_csv(tmp_path / "data")
    cfg = TrainConfig(epochs=1, batch_size=16, amp=False, augment=False)
    ckpts = tmp_path / "ckpt"

    def run(forget=("p0",)):
        splits = load_folder(csv, forget=list(forget), image_size=32)
        return train_or_load("retrained", splits, cfg, seed=0, device="cpu", ckpt_dir=ckpts,
                             progress=False)[1]

    assert run()["reused"] is False
    assert run()["reused"] is True          # same data: the checkpoint is reused
    # one label flipped in the CSV
    rows[3]["label"] = "1" if rows[3]["label"] == "0" else "0"
    _write_rows(csv, rows)
    assert run()["reused"] is False
    assert run()["reused"] is True
    # one image replaced by a black one (same name, same size on disk is not required)
    from PIL import Image
    target = tmp_path / "data" / rows[4]["path"]
    before = target.stat()
    Image.new("RGB", (32, 32)).save(target)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert run()["reused"] is False
    assert run()["reused"] is True
    # one more person in the forget list
    assert run(("p0", "p1"))["reused"] is False
    assert run(("p0", "p1"))["reused"] is True


def test_a_reused_unlearned_model_must_come_from_the_same_data(tmp_path, splits, model):
    from dlfd_lib.benchmark import unlearned_model
    from dlfd_lib.data.splits import SplitDataset, UnlearningSplits
    orig = tmp_path / "orig.pt"
    save_checkpoint(model, orig)
    kw = dict(profile="smoke", seed=0, device="cpu", ckpt_dir=tmp_path, progress=False,
              hparams={"max_steps": 1})
    assert unlearned_model("finetune", model, orig, splits, **kw)[1]["reused"] is False
    assert unlearned_model("finetune", model, orig, splits, **kw)[1]["reused"] is True
    labels = splits.forget.labels.copy()
    labels[0] = (labels[0] + 1) % splits.num_classes
    forget = SplitDataset(splits.forget.source, labels, splits.forget.transform, splits.forget.identities)
    other = UnlearningSplits(splits.name, splits.task, splits.class_names, splits.retain, forget, splits.val,
                             splits.test, splits.image_size)
    assert unlearned_model("finetune", model, orig, other, **kw)[1]["reused"] is False


def test_image_digest_follows_in_place_edits_and_file_changes(tmp_path, splits):
    from dlfd_lib.data.splits import FileSource, TensorSource, content_digest
    src = TensorSource(splits.retain.source.images.clone())
    d0 = src.digest()
    assert src.digest() == d0
    src.images[0, 0, 0, 0] += 1
    assert src.digest() != d0
    p = tmp_path / "a.png"
    _image(0).save(p)
    fs = FileSource([p])
    f0 = fs.digest()
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fs.digest() != f0
    assert set(content_digest(splits)) == {"retain", "forget", "val", "test"}


# ------------------------------------------------------------------ 5. paths outside the root

def test_csv_paths_outside_the_root_are_refused_unless_allowed(tmp_path):
    from dlfd_lib.data import DatasetError, load_folder, load_splits
    csv, rows = _folder_csv(tmp_path / "data")
    outside = tmp_path / "outside.png"
    _image(99).save(outside)
    rows[0]["path"] = "../outside.png"
    rows[1]["path"] = str(outside)
    _write_rows(csv, rows)
    with pytest.raises(DatasetError) as err:
        load_folder(csv, forget=["p0"], image_size=32)
    msg = str(err.value)
    assert "2 of 30 image paths" in msg and "outside the image root" in msg
    assert "'../outside.png' (line 2)" in msg and "(line 3)" in msg
    assert "allow_absolute_paths=True" in msg
    s = load_splits("folder", task="x", data_root=str(csv), allow_absolute_paths=True,
                    forget=["p0"], image_size=32)
    assert outside in s.forget.source.paths


def test_mufac_paths_outside_data_root_are_refused(tmp_path):
    import pandas as pd
    from dlfd_lib.data import DatasetError, load_mufac
    root = tmp_path / "MUFAC"
    for split, fam in (("train", 1), ("val", 801), ("test", 851)):
        recs = []
        for f in range(fam, fam + (6 if split == "train" else 2)):
            for k in range(3):
                name = f"F{f:04d}_AGE_D_18_a{k}.png"
                (root / f"{split}_images").mkdir(parents=True, exist_ok=True)
                _image(f * 10 + k).save(root / f"{split}_images" / name)
                recs.append({"image_path": name, "age_class": "abcdefgh"[(f + k) % 8]})
        pd.DataFrame(recs).to_csv(root / f"custom_{split}_dataset.csv", index=False)
    assert len(load_mufac(root, forget_size=3, image_size=32).forget) == 3
    train = pd.read_csv(root / "custom_train_dataset.csv")
    outside = tmp_path / "F0999_outside.png"
    _image(5).save(outside)
    train.loc[4, "image_path"] = "../../F0999_outside.png"
    train.loc[5, "image_path"] = "/etc/hostname"
    train.to_csv(root / "custom_train_dataset.csv", index=False)
    with pytest.raises(DatasetError, match=r"2 of 18 image paths.*outside the MUFAC data_root.*"
                                           r"'\.\./\.\./F0999_outside\.png' \(line 6\).*"
                                           r"'/etc/hostname' \(line 7\).*allow_absolute_paths"):
        load_mufac(root, forget_size=3, image_size=32)


# ------------------------------------------------------------------ 6. leftovers and permissions

def test_stale_temporaries_of_killed_writes_are_cleaned_on_the_next_save(tmp_path, model):
    import subprocess
    target = tmp_path / "m.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".m.pt.pid{dead}.abc123.tmp"          # its writer is gone
    old = tmp_path / ".m.pt.k9x8.tmp"                          # an older kit's, an hour old
    live = tmp_path / f".m.pt.pid{os.getppid()}.zz.tmp"        # a write still in progress
    other = tmp_path / f".n.pt.pid{dead}.abc.tmp"              # another target's
    for p in (stale, old, live, other):
        p.write_bytes(b"x" * 1000)
    os.utime(old, (0, 0))
    save_checkpoint(model, target)
    assert target.is_file()
    assert not stale.exists() and not old.exists()
    assert live.exists() and other.exists()


def test_written_files_respect_the_umask(tmp_path, model):
    old = os.umask(0o022)
    try:
        save_checkpoint(model, tmp_path / "m.pt")
        save_json({"a": 1}, tmp_path / "r.json")
        atomic_write_bytes(tmp_path / "t.csv", lambda tmp: Path(tmp).write_text("a\n"))
        os.umask(0o077)
        save_json({"a": 1}, tmp_path / "private.json")
    finally:
        os.umask(old)
    for name in ("m.pt", "r.json", "t.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600


def test_provenance_of_a_killed_run_says_interrupted_or_killed(tmp_path):
    import json
    import platform
    import subprocess
    from dlfd_lib.pipeline import read_provenance
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)
    rec = {"status": "running", "process": {"pid": dead, "host": platform.node()},
           "notebooks": [{"notebook": "01_x.ipynb", "status": "ok"},
                         {"notebook": "02_y.ipynb", "status": "running"}]}
    save_json(rec, tmp_path / "provenance.json")
    got = read_provenance(tmp_path)
    assert got["status"] == "interrupted or killed"
    assert [n["status"] for n in got["notebooks"]] == ["ok", "interrupted or killed"]
    assert json.loads((tmp_path / "provenance.json").read_text())["status"] == "interrupted or killed"
    # a run that is alive stays "running"
    save_json({**rec, "process": {"pid": os.getpid(), "host": platform.node()}},
              tmp_path / "provenance.json")
    assert read_provenance(tmp_path)["status"] == "running"


# ------------------------------------------------------------------ 7. messages

def test_checkpoint_messages_say_what_the_file_is(tmp_path, model):
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(whole)
    msg = str(err.value)
    assert "not a state dict" in msg and "refuses to load arbitrary pickles for safety" in msg
    assert "weights_only=False" in msg and "state_dict()" in msg and "corrupt" not in msg

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="refuses to load arbitrary pickles for safety"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    folder = tmp_path / "ckpts"
    folder.mkdir()
    save_checkpoint(model, folder / "a.pt")
    with pytest.raises(CheckpointError, match=r"is a directory, not a checkpoint file.*a\.pt"):
        load_checkpoint(folder)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_message(tmp_path, model):
    save_checkpoint(model, tmp_path / "m.pt")
    with pytest.raises(RuntimeError, match="CUDA is not available here; use device='cpu'"):
        build_model(3, "cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available here; use device='cpu'"):
        load_checkpoint(tmp_path / "m.pt", device="cuda")


# ------------------------------------------------------------------ 3. TrainConfig

@pytest.mark.parametrize("kw, expected", [
    ({"lr": "0.1"}, "lr='0.1' must be a number > 0"),
    ({"epochs": 2.5}, "epochs=2.5 must be a whole number >= 1"),
    ({"batch_size": True}, "batch_size=True must be a whole number"),
    ({"amp": "yes"}, "amp='yes' must be True or False"),
    ({"momentum": 1.5}, "momentum=1.5 must be a finite number in [0, 1)"),
])
def test_train_config_rejects_bad_values_clearly(kw, expected):
    from dlfd_lib.train import TrainConfig
    with pytest.raises(ValueError) as err:
        TrainConfig(**kw)
    assert expected in str(err.value)


def test_train_config_lists_every_bad_value_at_once():
    from dlfd_lib.train import TrainConfig
    with pytest.raises(ValueError) as err:
        TrainConfig(lr="0.1", epochs=2.5)
    assert "lr='0.1'" in str(err.value) and "epochs=2.5" in str(err.value)
    TrainConfig(epochs=np.int64(3), lr=np.float32(0.1))  # NumPy numbers are numbers


# ------------------------------------------------------------------ 1., 3., 6., 7. the runner

from dlfd_lib.cli import main  # noqa: E402
from dlfd_lib.pipeline import (NotebookFailed, ParameterError, RunLocked, run_lock,  # noqa: E402
                               run_notebooks)
from test_pipeline import write_notebook  # noqa: E402

NB_PARAMS = ('profile = "quick"\nseed = 0\ndevice = "auto"\nforce_retrain = False\n'
             'data_options = {}\nmethods = None\nlr = 0.01\nname = "x"')


def _nbs(tmp_path: Path, code: str) -> Path:
    nbs = tmp_path / "nbs"
    write_notebook(nbs / "01_case.ipynb", [("md", "# a case"), ("params", NB_PARAMS),
                                           ("code", "x = 1"), ("code", code)])
    return nbs


def test_a_cell_past_its_timeout_names_the_notebook_the_cell_and_the_timeout(tmp_path):
    nbs = _nbs(tmp_path, "import threading\nthreading.Event().wait()  # never returns")
    out = tmp_path / "out"
    with pytest.raises(NotebookFailed) as err:
        run_notebooks("smoke", notebooks_dir=nbs, out_dir=out, device="cpu", progress_bar=False,
                      cell_timeout=20)  # far more than the trivial cells before it need
    msg = str(err.value)
    assert "01_case.ipynb" in msg and "cell 4 (code cell 3)" in msg
    assert "cell timeout of 20 s" in msg and "--cell-timeout" in msg
    assert "the cell begins: import threading" in msg
    assert err.value.cell_index == 4 and (out / "01_case.ipynb").is_file()
    import json
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "failed" and prov["cell_timeout_s"] == 20


def test_every_profile_sets_a_cell_timeout():
    from dlfd_lib.profiles import PROFILES
    for name, prof in PROFILES.items():
        assert isinstance(prof["cell_timeout_s"], int) and prof["cell_timeout_s"] >= 600, name


def test_a_dead_kernel_names_the_cell(tmp_path):
    nbs = _nbs(tmp_path, "import os\nos._exit(1)")
    with pytest.raises(NotebookFailed) as err:
        run_notebooks("smoke", notebooks_dir=nbs, out_dir=tmp_path / "out", device="cpu",
                      progress_bar=False)
    msg = str(err.value)
    assert "kernel died while running cell 4 (code cell 3)" in msg
    assert "the cell begins: import os" in msg
    assert (tmp_path / "out" / "01_case.ipynb").is_file()


def test_ctrl_c_is_a_clean_interruption_that_keeps_the_notebook(tmp_path):
    import json
    import signal
    import subprocess
    import time
    nbs = _nbs(tmp_path, "open('started.flag', 'w').close()\nimport time\ntime.sleep(900)")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlfd_lib.cli", "run", "--profile", "smoke", "--notebooks-dir",
         str(nbs), "--out", str(out), "--device", "cpu", "-p", "name=y"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(600):  # the kernel starts, then the cell writes its flag
            if (nbs / "started.flag").exists() or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert (nbs / "started.flag").exists(), proc.communicate(timeout=60)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted in notebook 01_case.ipynb, cell 4 (code cell 3)" in err, err
    assert "Traceback" not in err, err
    assert (out / "01_case.ipynb").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] == "interrupted"


def test_the_rerun_hint_is_the_full_command(tmp_path, capsys):
    nbs = _nbs(tmp_path, "raise RuntimeError('boom')")
    out = tmp_path / "my out"
    code = main(["run", "--profile", "smoke", "--notebooks-dir", str(nbs), "--out", str(out),
                 "--device", "cpu", "--seed", "3", "-p", "name=hello world",
                 "-p", 'data_options={"drop_leaks": true}', "-p", "lr=0.5"])
    assert code == 1
    err = capsys.readouterr().err
    hint = err.split("rerun it alone with: ")[1].strip()
    assert f"--out '{out}'" in hint and "--seed 3" in hint and "--device cpu" in hint
    assert "-p 'name=hello world'" in hint and "-p lr=0.5" in hint
    assert """-p 'data_options={"drop_leaks": true}'""" in hint
    import shlex
    from dlfd_lib.cli import build_parser
    args = build_parser().parse_args(shlex.split(hint)[1:])  # it parses back to the same run
    assert dict(args.params) == {"name": "hello world", "data_options": {"drop_leaks": True},
                                 "lr": 0.5}
    assert args.out == str(out) and args.seed == 3


@pytest.mark.parametrize("argv, expected", [
    (["-p", "force_retrain=no"], "force_retrain='no' must be True or False"),
    (["-p", "data_options={split: identity}"], "is not valid JSON"),
    (["-p", "data_options=[1]"], "data_options=[1] must be a JSON object"),
    (["-p", 'data_options={"splt": "identity"}'], "unknown key 'splt'"),
    (["-p", 'data_options={"drop_leaks": "yes"}'], "data_options (dataset 'synthetic')['drop_leaks']='yes' must be True or False"),
    (["-p", "methods=[\"dlfd\", \"nope\"]"], "must be a JSON list of registered methods"),
    (["-p", "lr=fast"], "lr='fast' must be a number"),
    (["-p", "forse_retrain=True"], "no selected notebook has a parameter 'forse_retrain'"),
])
def test_bad_notebook_parameters_are_refused_before_anything_runs(tmp_path, capsys, argv, expected):
    nbs = _nbs(tmp_path, "open('ran.flag', 'w').close()")
    out = tmp_path / "out"
    code = main(["run", "--profile", "smoke", "--notebooks-dir", str(nbs), "--out", str(out),
                 "--device", "cpu", *argv])
    err = capsys.readouterr().err
    assert code == 2 and expected in err, err
    assert "nothing was run" in err
    assert not out.exists() and not (nbs / "ran.flag").exists()


def test_every_bad_parameter_is_listed_at_once(tmp_path):
    nbs = _nbs(tmp_path, "x = 2")
    with pytest.raises(ParameterError) as err:
        run_notebooks("smoke", notebooks_dir=nbs, out_dir=tmp_path / "out", device="cpu",
                      parameters={"force_retrain": "no", "data_options": "{bad json",
                                  "lr": "0.1"})
    msg = str(err.value)
    assert msg.startswith("3 notebook parameter(s)")
    assert "force_retrain='no'" in msg and "data_options='{bad json'" in msg and "lr='0.1'" in msg
    # good values pass (True, a dict with known keys, an int where a float is declared)
    run_notebooks("smoke", notebooks_dir=nbs, out_dir=tmp_path / "out", device="cpu",
                  progress_bar=False, parameters={"force_retrain": True, "lr": 1,
                                                  "data_options": {"drop_leaks": True}})


def test_the_real_notebooks_accept_their_own_defaults_and_refuse_bad_types():
    from dlfd_lib.pipeline import notebook_parameters, select_notebooks, validate_parameters
    paths = select_notebooks(None)
    for nb in paths:
        defaults = {k: v for k, v in notebook_parameters(nb).items()
                    if k not in ("profile", "seed", "device")}
        validate_parameters([nb], defaults, "smoke")
    with pytest.raises(ParameterError, match="seeds='0,1' must be a JSON list"):
        validate_parameters(paths, {"seeds": "0,1"}, "smoke")
    with pytest.raises(ParameterError, match=r"dlfd_overrides\['K'\]=2.5 must be a whole number"):
        validate_parameters(paths, {"dlfd_overrides": {"K": 2.5}}, "smoke")


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    nbs = _nbs(tmp_path, "x = 2")
    out = tmp_path / "out"
    out.mkdir()
    with run_lock(out, "dlfd run --profile smoke (the first run)"):
        with pytest.raises(RunLocked) as err:
            run_notebooks("smoke", notebooks_dir=nbs, out_dir=out, device="cpu",
                          progress_bar=False)
    msg = str(err.value)
    assert "another dlfd run is writing into" in msg and f"pid {os.getpid()}" in msg
    assert "the first run" in msg and "--out" in msg
    assert not (out / "provenance.json").exists()
    # once the first run is over, the folder is free again
    assert run_notebooks("smoke", notebooks_dir=nbs, out_dir=out, device="cpu",
                         progress_bar=False)["status"] == "ok"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_with_cuda_on_a_machine_without_it_is_refused_up_front(tmp_path):
    nbs = _nbs(tmp_path, "x = 2")
    with pytest.raises(ParameterError, match="CUDA is not available here"):
        run_notebooks("smoke", notebooks_dir=nbs, out_dir=tmp_path / "out", device="cuda")
    assert not (tmp_path / "out").exists()


EXPLORER = """\
import numpy as np, pandas as pd
from dlfd_lib.widgets import feature_explorer
rng = np.random.default_rng(0)
rows = [{"model": m, "split": s, "index": i, "label": i % 3, "class": "abc"[i % 3],
         "identity": i // 4 if s == "forget" else -1, "x": rng.normal(), "y": rng.normal()}
        for m in ("original", "retrained", "dlfd") for s, n in (("retain", 20), ("test", 10), ("forget", 8))
        for i in range(n)]
explorer = feature_explorer(pd.DataFrame(rows), compare_with="original")
explorer.controls["colour"].value = "split"   # a redraw, as a user's click would cause
explorer"""


def test_the_feature_explorer_never_makes_nbclient_write_to_the_shell_socket(tmp_path, monkeypatch):
    """The cause of notebook 04's intermittent hang: drawing inside ``with output:`` makes
    nbclient's Output-widget mimic send a comm message on the shell socket for every output,
    racing the wait for the cell's execute_reply on that socket. The explorer must draw without
    it, and its picture must still reach the widget's state."""
    import nbformat
    from nbclient import output_widget
    sends = []
    real = output_widget.OutputWidget.sync_state
    monkeypatch.setattr(output_widget.OutputWidget, "sync_state",
                        lambda self: (sends.append(self.comm_id), real(self))[1])
    nbs = tmp_path / "nbs"
    write_notebook(nbs / "01_explorer.ipynb", [("params", NB_PARAMS), ("code", EXPLORER)])
    run_notebooks("smoke", notebooks_dir=nbs, out_dir=tmp_path / "out", device="cpu",
                  progress_bar=False)
    assert sends == []
    nb = nbformat.read(str(tmp_path / "out" / "01_explorer.ipynb"), as_version=4)
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    outputs = [st["state"].get("outputs", []) for st in states.values()
               if st["model_name"] == "OutputModel"]
    assert outputs and any("image/png" in o.get("data", {}) for out in outputs for o in out)


def test_no_explorer_draws_inside_an_output_context():
    """Every explorer in dlfd_lib.widgets (the step explorer of notebook 03 as well as notebook
    04's map) must set its Output widget's ``outputs`` instead of drawing inside ``with out:``,
    the pattern that made headless runs hang (see the test above); a source check catches a new
    explorer written the old way."""
    import ast
    import inspect

    from dlfd_lib import widgets
    tree = ast.parse(inspect.getsource(widgets))
    offenders = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.With)
                 for item in node.items
                 if isinstance(item.context_expr, ast.Name) and "out" in item.context_expr.id]
    calls = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id == "display"]
    assert not offenders and not calls, (offenders, calls)


def test_a_dead_kernels_unretrieved_task_is_not_printed_after_an_interruption():
    """After an interruption the kit shuts the kernel down itself; a cell task still waiting for its
    reply ends with DeadKernelError, which asyncio would print as a traceback when it collects the
    task. That one record is dropped; any other asyncio error still gets through."""
    import logging

    from nbclient.exceptions import DeadKernelError

    from dlfd_lib.notebook_run.papermill_run import _quiet_dead_kernel_tasks

    def record(exc, msg="Task exception was never retrieved\\nfuture: <Task finished>"):
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None,
                                 (type(exc), exc, None) if exc else None)
    assert not _quiet_dead_kernel_tasks(record(DeadKernelError("Kernel died")))
    assert _quiet_dead_kernel_tasks(record(RuntimeError("boom")))
    assert _quiet_dead_kernel_tasks(record(DeadKernelError("Kernel died"), msg="something else"))
    assert _quiet_dead_kernel_tasks(record(None))
