"""Answers that must not mislead: one rule per input, strict option values, one-line errors (issue 17, §2)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from art_adr.cli import main

EPS = dict(eps=0.1, eps_step=0.025, max_iter=2)


def _cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for needle in needles:
        assert needle in lines[0], res.output


def test_uint8_images_follow_one_rule(blobs, make_classifier):
    from art_adr import AdversarialTrainerADR, SoftLabelPGD

    x, y = blobs
    xu = np.round(x[:32] * 255).astype(np.uint8)
    clf = make_classifier()
    trainer = AdversarialTrainerADR(clf, verbose=False, **EPS)
    np.testing.assert_allclose(trainer.predict(xu), trainer.predict(xu.astype(np.float32) / 255), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        SoftLabelPGD(clf, eps=0.1).generate(xu, y[:32])


def test_soft_label_pgd_uses_the_one_step_rule_and_takes_verbose(make_classifier):
    from art_adr import SoftLabelPGD
    from art_adr.attacks import default_eps_step

    clf = make_classifier()
    assert SoftLabelPGD(clf, eps=0.1).eps_step == pytest.approx(default_eps_step(0.1, 10))
    assert SoftLabelPGD(clf, eps=1 / 255).eps_step == pytest.approx(default_eps_step(1 / 255, 10))
    assert SoftLabelPGD(clf, eps=0.1, max_iter=5).eps_step == pytest.approx(0.05)
    assert SoftLabelPGD(clf, eps=0.1, verbose=True).verbose is True
    with pytest.raises(ValueError, match="eps_step"):
        SoftLabelPGD(clf, eps=0.1, eps_step=float("nan"))


def test_export_has_no_dataset_option_and_refuses_robust_above_clean(tmp_path):
    res = _cli("export", tmp_path / "x.pt", "--name", "X", "--out", tmp_path / "b", "--dataset", "cifar10",
               "--clean-acc", "50", "--autoattack-acc", "40")
    assert res.exit_code == 2 and "--dataset" in res.output, res.output  # no such option: the checkpoint's
    from art_adr.checkpoint import save_checkpoint
    from art_adr.models import create_model

    ck = tmp_path / "c10.pt"
    save_checkpoint(ck, {"model": {"arch": "preact-resnet18", "num_classes": 10, "dataset": "cifar10",
                                   "kwargs": {}}, "config": {},
                         "student": create_model("preact-resnet18", 10, dataset="cifar10").state_dict()})
    res = _cli("export", ck, "--name", "X", "--out", tmp_path / "b", "--clean-acc", "30", "--autoattack-acc", "60",
               "--device", "cpu")
    _one_line_error(res, "cannot exceed clean")
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*.json"))
