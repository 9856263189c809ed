"""Issue 10 §4-5: no code runs from a data file; one clear error per mistake, and nothing changed by it."""

from __future__ import annotations

import os
import pickle
import pickletools

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from art_adr import AdversarialTrainerADR, AdversarialTrainerTRADESADR
from art_adr.checkpoint import CheckpointError, load_checkpoint
from art_adr.cli import main
from art_adr.config import ConfigError, resolve_config
from art_adr.data import DatasetError, load_dataset
from art_adr.data.cifar import _unpickle
from art_adr.estimator import resolve_device
from art_adr.trainer import TrainingDivergedError

EPS = dict(eps=0.1, eps_step=0.025, max_iter=2)
MARKER_ENV = "ART_ADR_TEST_MARKER"


def _cli(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def _one_line_error(res, text: str) -> None:
    """Exit code 2, ``Error: ...`` on one line holding ``text``, no traceback."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output, res.output
    lines = [ln for ln in res.output.splitlines() if text in ln]
    assert lines and lines[0].startswith("Error"), res.output


# ---------------------------------------------------------------- §4 no code runs from a data file


class _Evil:
    """Unpickling this runs ``marker.touch()`` through ``__reduce__`` (here: ``os.system``/``eval``/``exec``)."""

    def __init__(self, how: str, marker: str) -> None:
        self.how, self.marker = how, marker

    def __reduce__(self):
        code = f"open({self.marker!r}, 'w').close()"
        if self.how == "system":
            return os.system, (f"touch {self.marker}",)
        if self.how == "eval":
            return eval, (code,)
        return exec, (code,)


def _write_cifar10(root, test_obj) -> None:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    with open(base / "test_batch", "wb") as f:
        pickle.dump(test_obj, f, protocol=2)


@pytest.mark.parametrize("how", ["system", "eval", "exec", "nested", "object-array"])
def test_malicious_cifar_pickle_is_refused_and_runs_nothing(tmp_path, how):
    marker = tmp_path / "pwned"
    evil = _Evil("exec" if how in ("nested", "object-array") else how, str(marker))
    if how == "nested":  # hidden inside the labels list of an otherwise valid batch
        obj = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, evil]}
    elif how == "object-array":  # an object array: its items are unpickled with the same restrictions
        arr = np.empty(2, dtype=object)
        arr[0], arr[1] = 0, evil
        obj = {b"data": np.zeros((2, 3072), np.uint8), b"labels": arr}
    else:
        obj = evil
    _write_cifar10(tmp_path, obj)
    with pytest.raises(DatasetError, match="test_batch.*refusing to load"):
        load_dataset("cifar10", "test", data_dir=tmp_path)
    assert not marker.exists()


def test_malicious_cifar_pickle_through_evaluate_cli(tmp_path):
    from test_cli_eval_export import _small_checkpoint

    marker = tmp_path / "pwned"
    _write_cifar10(tmp_path / "data", _Evil("system", str(marker)))
    ck = _small_checkpoint(tmp_path / "c10.pt", dataset="cifar10")
    res = _cli("evaluate", ck, "--attacks", "clean", "--data-dir", tmp_path / "data", "--out", tmp_path / "o")
    _one_line_error(res, "refusing to load")
    assert not marker.exists() and not (tmp_path / "o").exists()


def _numpy1_names(data: bytes) -> bytes:
    """A protocol-2 pickle as numpy 1.x writes it (``numpy.core`` instead of numpy 2's ``numpy._core``)."""
    return data.replace(b"numpy._core.", b"numpy.core.")


@pytest.mark.parametrize("protocol", [2, 4, 5, "numpy1"])
def test_restricted_unpickler_reads_real_numpy_pickles(tmp_path, protocol):
    rng = np.random.default_rng(0)
    obj = {b"batch_label": b"testing batch", b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
           b"labels": [1, 2, 3], b"filenames": [b"a.png", b"b.png", b"c.png"], b"n": np.int64(3),
           b"f": np.float32(0.5), "text": "ok", b"nested": {b"k": [np.arange(4, dtype=np.int32)]}}
    data = pickle.dumps(obj, protocol=2 if protocol == "numpy1" else protocol)
    if protocol == "numpy1":
        data = _numpy1_names(data)
        names = {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
        assert "numpy.core.multiarray _reconstruct" in names  # really the numpy 1.x spelling
    path = tmp_path / "batch"
    path.write_bytes(data)
    got = _unpickle(path)
    assert np.array_equal(got[b"data"], obj[b"data"]) and got[b"data"].dtype == np.uint8
    assert got[b"labels"] == [1, 2, 3] and got[b"filenames"] == obj[b"filenames"]
    assert got[b"n"] == 3 and got[b"f"] == np.float32(0.5) and got["text"] == "ok"
    assert np.array_equal(got[b"nested"][b"k"][0], np.arange(4))


def test_malicious_checkpoint_is_refused_weights_only(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "art-adr", "model": {}, "student": _Evil("system", str(marker))}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    res = _cli("evaluate", path, "--out", tmp_path / "o")
    _one_line_error(res, "not a readable checkpoint")
    assert not marker.exists()


# ---------------------------------------------------------------- §5 Python API: ValueError naming the argument

API_BAD_KWARGS = [
    ({"temperature": float("nan")}, "temperature"), ({"temperature": (2.0, float("inf"))}, "temperature"),
    ({"interpolation": float("nan")}, "interpolation"), ({"interpolation": (float("inf"), 0.5)}, "interpolation"),
    ({"temperature": "2"}, "temperature"), ({"temperature": (1.0, 2.0, 3.0)}, "temperature"),
    ({"eps": float("inf")}, "eps"), ({"eps": float("nan")}, "eps"), ({"eps": "8/255"}, "eps"),
    ({"eps_step": float("nan")}, "eps_step"), ({"awp_rho": float("nan")}, "awp_rho"),
    ({"awp_rho": float("inf")}, "awp_rho"), ({"ema_decay": float("nan")}, "ema_decay"),
    ({"max_iter": 2.5}, "max_iter"), ({"max_iter": "10"}, "max_iter"), ({"max_iter": 0}, "max_iter"),
    ({"max_iter": True}, "max_iter"), ({"eval_max_iter": 0}, "eval_max_iter"),
    ({"eval_every": 1.5}, "eval_every"), ({"log_every": 0}, "log_every"), ({"awp_warmup": -1}, "awp_warmup"),
    ({"seed": 0.5}, "seed"), ({"eval_batch_size": 0}, "eval_batch_size"), ({"norm": 3}, "norm"),
    ({"augment": True, "crop_padding": -1}, "crop_padding"), ({"augment": "yes"}, "augment"),
]


@pytest.mark.parametrize("kwargs,name", API_BAD_KWARGS, ids=[str(k) for k, _ in API_BAD_KWARGS])
def test_trainer_rejects_bad_hyperparameters(make_classifier, kwargs, name):
    with pytest.raises(ValueError, match=name):
        AdversarialTrainerADR(make_classifier(), verbose=False, **{**EPS, **kwargs})


@pytest.mark.parametrize("beta", [float("inf"), float("nan"), -1.0, "6"])
def test_trades_rejects_bad_beta(make_classifier, beta):
    with pytest.raises(ValueError, match="beta"):
        AdversarialTrainerTRADESADR(make_classifier(), beta=beta, verbose=False, **EPS)


def test_trainer_rejects_bad_classifiers(make_classifier):
    from art.estimators.classification import PyTorchClassifier

    from conftest import TinyNet

    for bad in (None, TinyNet(), "model", 3):
        with pytest.raises(ValueError, match="classifier must be an ART PyTorchClassifier"):
            AdversarialTrainerADR(bad, verbose=False)
    model = TinyNet(classes=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    wrong_classes = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), optimizer=opt, input_shape=(1, 8, 8),
                                      nb_classes=10, clip_values=(0, 1))
    with pytest.raises(ValueError, match=r"nb_classes is 10 but its model .* shape \(2, 4\)"):
        AdversarialTrainerADR(wrong_classes, verbose=False)
    wrong_shape = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), optimizer=opt, input_shape=(3, 8, 8),
                                    nb_classes=4, clip_values=(0, 1))
    with pytest.raises(ValueError, match="input_shape"):
        AdversarialTrainerADR(wrong_shape, verbose=False)


def test_fit_rejects_bad_arrays_and_arguments(blobs, make_classifier):
    x, y = blobs
    clf = make_classifier()
    before = [p.detach().clone() for p in clf.model.parameters()]
    trainer = AdversarialTrainerADR(clf, verbose=False, **EPS)
    cases = [
        (dict(x=x.astype(np.complex64)), "x must hold real numbers"),
        (dict(x=x.astype(object)), "x must hold real numbers"),
        (dict(x=torch.from_numpy(x).to(torch.complex64)), "x must hold real numbers"),
        (dict(x=x > 0.5), "x must hold real numbers"),
        (dict(x=x.tolist()), "x must be a numpy array"),
        (dict(y=y.astype(object)), "y must be an array"),
        (dict(y=y.astype(str)), "y must be an array"),
        (dict(y=np.int64(3)), "y must be an array"),
        (dict(batch_size=2.5), "batch_size"), (dict(batch_size="10"), "batch_size"), (dict(batch_size=0), "batch_size"),
        (dict(nb_epochs=1.5), "nb_epochs"), (dict(nb_epochs="2"), "nb_epochs"),
        (dict(validation_data=(x,)), "validation_data"), (dict(validation_data=x), "validation_data"),
        (dict(callbacks=print), "callbacks"), (dict(callbacks=[1]), "callbacks"),
    ]
    for change, msg in cases:
        kw = {"x": x, "y": y, "batch_size": 64, "nb_epochs": 1, **change}
        with pytest.raises(ValueError, match=msg):
            trainer.fit(**kw)
    gen = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                      batch_size=64)
    for kw, msg in [({"steps_per_epoch": 2.5}, "steps_per_epoch"), ({"nb_epochs": "1"}, "nb_epochs"),
                    ({"generator": None}, "generator"), ({"generator": 5}, "generator")]:
        with pytest.raises(ValueError, match=msg):
            trainer.fit_generator(**{"generator": gen, **kw})
    assert trainer.step == 0
    for p, q in zip(before, clf.model.parameters()):
        assert torch.equal(p, q)


# ---------------------------------------------------------------- §5 divergence restores the last finite state


def test_divergence_restores_model_teacher_and_optimizer(blobs, make_classifier):
    x, y = blobs
    clf = make_classifier()
    trainer = AdversarialTrainerADR(clf, log_every=1, verbose=False, **EPS)
    saved = {}

    def blow_up(tr, record):  # after a good epoch 1: remember the state, then make the next step diverge
        if record["epoch"] == 1:
            saved["student"] = {k: v.clone() for k, v in tr.student_module.state_dict().items()}
            saved["teacher"] = {k: v.clone() for k, v in tr.teacher.state_dict().items()}
            saved["step"] = tr.step
            for g in tr.optimizer.param_groups:
                g["lr"] = 1e30

    with pytest.raises(TrainingDivergedError, match="non-finite.*restored to the start of epoch 2"):
        trainer.fit(x, y, batch_size=64, nb_epochs=3, callbacks=[blow_up])
    for key, ref in (("student", clf.model.state_dict()), ("teacher", trainer.teacher.state_dict())):
        for name, value in ref.items():
            assert torch.equal(value, saved[key][name]), (key, name)
    assert trainer.step == saved["step"] and trainer.epoch == 1 and len(trainer.history) == 1
    momenta = [s["momentum_buffer"] for s in trainer.optimizer.state.values()]
    assert momenta and all(torch.isfinite(m).all() for m in momenta)
    # the caller can lower the learning rate and continue from there
    for g in trainer.optimizer.param_groups:
        g["lr"] = 0.05
    trainer.fit(x, y, batch_size=64, nb_epochs=2)  # the 2 epochs that remain, on the restored τ/λ plan
    assert trainer.epoch == 3 and all(torch.isfinite(p).all() for p in clf.model.parameters())
    # the plan ended where it would have
    assert trainer.history[-1]["tau"] == pytest.approx(trainer.rectification.temperature[1])


def test_divergence_from_non_finite_weights_says_not_restored(blobs, make_classifier):
    x, y = blobs
    clf = make_classifier()
    trainer = AdversarialTrainerADR(clf, log_every=1, verbose=False, **EPS)
    with torch.no_grad():
        clf.model.fc.weight[0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="NOT restored"):
        trainer.fit(x, y, batch_size=64, nb_epochs=1)


# ---------------------------------------------------------------- §5 CLI: config values, --debug, data dir, device

CONFIG_BAD = [
    ("eval_every", 0, "eval_every"), ("crop_padding", -1, "crop_padding"), ("momentum", -0.9, "momentum"),
    ("weight_decay", -5e-4, "weight_decay"), ("lr_gamma", -0.1, "lr_gamma"), ("eval_max_iter", 0, "eval_max_iter"),
    ("eval_batch_size", 0, "eval_batch_size"), ("warmup_epochs", -1, "warmup_epochs"), ("momentum", 1.5, "momentum"),
    ("awp_warmup", -2, "awp_warmup"), ("beta", -1, "beta"), ("seed", -1, "seed"),
    ("milestones", [0.5, float("nan")], "milestones"),
]


@pytest.mark.parametrize("key,value,name", CONFIG_BAD, ids=[f"{k}={v}" for k, v, _ in CONFIG_BAD])
def test_config_validate_names_the_field(key, value, name):
    with pytest.raises(ConfigError, match=name):
        resolve_config(None, {key: value})


@pytest.mark.parametrize("args,text", [
    (["--eval-every", "0"], "eval_every must be >= 1"),
    (["--set", "crop_padding=-1"], "crop_padding must be >= 0"),
    (["--set", "momentum=-0.5"], "momentum must be in [0, 1)"),
    (["--set", "weight_decay=-1"], "weight_decay must be >= 0"),
    (["--set", "lr_gamma=-0.1"], "lr_gamma must be > 0"),
    (["--set", "eval_max_iter=0"], "eval_max_iter must be >= 1"),
    (["--eval-max-iter", "3", "--set", "eval_max_iter=2"],
     "--eval-max-iter 3 and --set eval_max_iter=2 give eval_max_iter two values"),
    (["--set", "seed=1", "--set", "seed=2"], "--set seed=1 and --set seed=2 give seed two values"),
    (["--set", "description=!!python/object/apply:os.system [true]"],
     "YAML tags (!!python/object/apply:os.system) are not allowed"),
    (["--set", "description=!!str hello"], "YAML tags (!!str) are not allowed"),
])
def test_cli_train_bad_config_one_line_exit_2(tmp_path, args, text):
    res = _cli("train", "--dataset", "synthetic", "--out", tmp_path / "run", "-q", *args)
    _one_line_error(res, text)
    assert not (tmp_path / "run").exists()


def test_debug_flag_shows_the_traceback(tmp_path):
    res = _cli("--debug", "train", "--dataset", "synthetic", "--eval-every", "0", "--out", tmp_path / "run")
    assert res.exit_code == 2 and "Traceback" in res.output and "ConfigError" in res.output
    assert "--debug" in _cli("--help").output


@pytest.mark.parametrize("exc,text", [
    (PermissionError(13, "Permission denied"), "PermissionError: [Errno 13] Permission denied"),
    (ValueError("a bad\nvalue"), "ValueError: a bad value"),
    (TrainingDivergedError("loss is nan"), "loss is nan"),
])
def test_uncaught_expected_errors_become_one_line(tmp_path, monkeypatch, exc, text):
    import art_adr.runs

    def fail(*a, **k):
        raise exc

    monkeypatch.setattr(art_adr.runs, "train_run", fail)
    res = _cli("train", "--dataset", "synthetic", "--out", tmp_path / "run", "-q")
    _one_line_error(res, text)
    res = _cli("--debug", "train", "--dataset", "synthetic", "--out", tmp_path / "run", "-q")
    # --debug: re-raised (python prints the traceback), or the command's own message follows the traceback
    assert res.exit_code != 0 and (isinstance(res.exception, type(exc)) or "Traceback" in res.output)


def test_a_full_disk_in_any_command_is_one_disk_full_line(tmp_path, monkeypatch):
    import errno

    import art_adr.experiments

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "b" / "table1.md"))

    monkeypatch.setattr(art_adr.experiments, "run_benchmark", full)
    res = _cli("benchmark", "--dataset", "synthetic", "--out", tmp_path / "b", "-q")
    _one_line_error(res, f"disk full: no space left on device writing {tmp_path / 'b' / 'table1.md'}; free some space")


def test_data_dir_missing_or_incomplete_is_named(tmp_path, monkeypatch):
    from test_data import write_idx

    with pytest.raises(DatasetError, match=f"{tmp_path / 'nowhere'} does not exist"):
        load_dataset("fashion-mnist", "test", data_dir=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("cifar10", "test", data_dir=tmp_path / "nowhere")
    # images without labels: named, never completed from another folder (e.g. the system copy)
    d = tmp_path / "fm"
    d.mkdir()
    write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", "test", data_dir=d)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="fashion-mnist test split not found") as e:
        load_dataset("fashion-mnist", "test", data_dir=empty)
    assert "/usr/share/datasets" not in str(e.value)
    res = _cli("train", "--dataset", "fashion-mnist", "--data-dir", tmp_path / "nowhere", "--out",
               tmp_path / "run", "-q")
    _one_line_error(res, "does not exist")


def test_cli_train_synthetic_with_the_default_model(tmp_path):
    res = _cli("train", "--dataset", "synthetic", "--epochs", "1", "--subset", "32", "--batch-size", "16",
               "--max-iter", "1", "--set", "val_size=16", "--set", "eval_max_iter=1", "--out", tmp_path / "run",
               "-q")
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt")
    assert ckpt["model"]["arch"] == "small-cnn" and ckpt["model"]["dataset"] == "synthetic"


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(torch.device("cpu")).type == "cpu"
    for bad in ("tpu", "cuda:x", "", None, 3):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:0", "CUDA:1"):
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="only 1 GPU"):
        resolve_device("cuda:3")


def test_device_cuda_without_cuda_one_line_in_every_command(tmp_path, monkeypatch):
    from test_cli_eval_export import _small_checkpoint

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ck = _small_checkpoint(tmp_path / "m.pt")
    commands = {
        "train": ["train", "--dataset", "synthetic", "--device", "cuda", "--out", tmp_path / "run", "-q"],
        "evaluate": ["evaluate", ck, "--device", "cuda", "--out", tmp_path / "ev"],
        "analyze": ["analyze", ck, "--device", "cuda", "--out", tmp_path / "an", "--quiet"],
        "benchmark": ["benchmark", "--dataset", "synthetic", "--device", "cuda", "--out", tmp_path / "bm", "-q"],
        "sweep": ["sweep", "--recipe", "fashion-mnist-at-adr", "--device", "cuda", "--out", tmp_path / "sw", "-q"],
    }
    for name, args in commands.items():
        res = _cli(*args)
        _one_line_error(res, "no CUDA GPU")
        assert res.output.count("no CUDA GPU") == 1, (name, res.output)
    assert not any((tmp_path / d).exists() for d in ("ev", "an", "bm", "sw"))
