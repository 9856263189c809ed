"""The DDPM recipes' extra-data sampling (issue 24 §7): by default as the ADR authors' extra-data loader, a
``DataLoader(shuffle=True)`` over the generated set, re-created when exhausted (a fresh permutation per pass,
each image once per pass); ``extra_sampling="replacement"`` keeps art-adr's former uniform draws per batch."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from art_adr.config import RunConfig, resolve_config, with_legacy_defaults
from art_adr.loader import DeviceBatches, MixedBatches

N_MAIN, N_EXTRA, BATCH, FRACTION = 96, 50, 16, 0.5  # 8 extra images a batch, 6 per pass (50 mod 8 = 2 left out)


def _mixed(sampling: str = "shuffle", seed: int = 3, n_main: int = N_MAIN) -> MixedBatches:
    x = torch.zeros(n_main, 1, 1, 1, dtype=torch.uint8)
    main = DeviceBatches(x, torch.zeros(n_main, dtype=torch.long), BATCH, seed=seed, drop_last=True)
    labels = torch.arange(N_EXTRA)  # the extra images' labels are their indices
    return MixedBatches(main, torch.zeros(N_EXTRA, 1, 1, 1, dtype=torch.uint8), labels, FRACTION, sampling=sampling)


def _drawn(mixed: MixedBatches, epochs: range) -> list[torch.Tensor]:
    k = mixed.n_extra
    return [yb[-k:] for e in epochs for _, yb in mixed.epoch(e)]


def authors_extra_batches(dataset_size: int, batch: int, batches: int, generator: torch.Generator) -> list:
    """A transcription of the authors' training loop's extra-data draws: their loader (shuffle=True, whole batches),
    ``next()`` on its iterator, a new iterator when it is exhausted."""
    loader = DataLoader(TensorDataset(torch.arange(dataset_size)), batch_size=batch, shuffle=True, drop_last=True,
                        generator=generator)
    it, out = iter(loader), []
    for _ in range(batches):
        try:
            (b,) = next(it)
        except StopIteration:
            it = iter(loader)
            (b,) = next(it)
        out.append(b)
    return out


def _passes(batches: list[torch.Tensor], per_pass: int) -> list[torch.Tensor]:
    return [torch.cat(batches[i : i + per_pass]) for i in range(0, len(batches) - per_pass + 1, per_pass)]


def _assert_each_image_once_per_pass(batches: list[torch.Tensor], n: int, k: int) -> None:
    per_pass = n // k
    passes = _passes(batches, per_pass)
    assert len(passes) >= 3
    for p in passes:
        assert p.numel() == per_pass * k == p.unique().numel()  # no image twice within a pass
    assert any(not torch.equal(a, b) for a, b in zip(passes, passes[1:]))  # a fresh order per pass


def test_default_is_the_authors_permutation_per_pass_cycled():
    assert RunConfig().extra_sampling == "shuffle"
    assert resolve_config("cifar10-ddpm-at-adr-wa-awp").extra_sampling == "shuffle"
    mixed = _mixed()
    assert (mixed.sampling, mixed.n_extra, len(mixed)) == ("shuffle", 8, 12)
    ours = _drawn(mixed, range(4))  # 48 batches: 8 passes of 6, running on across epoch boundaries
    theirs = authors_extra_batches(N_EXTRA, mixed.n_extra, len(ours), torch.Generator().manual_seed(0))
    for batches in (ours, theirs):  # the same scheme: each image once per pass, passes cycled, the tail dropped
        assert all(b.shape == (8,) for b in batches)
        _assert_each_image_once_per_pass(batches, N_EXTRA, 8)


def test_the_transcription_check_catches_sampling_with_replacement():
    """The property above fails for the former draws (with 8 of 50 per batch, a repeat within a pass is certain
    enough: this seed has one)."""
    import pytest

    with pytest.raises(AssertionError):
        _assert_each_image_once_per_pass(_drawn(_mixed("replacement"), range(4)), N_EXTRA, 8)


def test_passes_run_on_across_epoch_boundaries():
    """5 batches an epoch, 6 a pass: a pass straddles epochs and is still a permutation (an epoch restarting the
    stream would repeat the first images)."""
    mixed = _mixed(n_main=40)
    assert len(mixed) == 5
    _assert_each_image_once_per_pass(_drawn(mixed, range(6)), N_EXTRA, 8)


def test_an_epoch_drawn_afresh_continues_the_passes_as_a_resumed_run_does():
    whole = _drawn(_mixed(), range(3))
    assert all(torch.equal(a, b) for a, b in zip(whole[24:], _drawn(_mixed(), range(2, 3))))  # epoch 2 alone
    assert not all(torch.equal(a, b) for a, b in zip(whole, _drawn(_mixed(seed=4), range(3))))  # seeded


def test_replacement_keeps_the_former_draws():
    mixed = _mixed("replacement")
    for epoch in (0, 1):
        g = mixed.main._generator(epoch + 104_729, torch.device("cpu"))
        former = [torch.randint(0, N_EXTRA, (8,), generator=g) for _ in range(len(mixed))]
        assert all(torch.equal(a, b) for a, b in zip(_drawn(mixed, range(epoch, epoch + 1)), former))


def test_option_is_a_config_field_and_a_flag_and_old_runs_keep_replacement():
    import pytest
    from click.testing import CliRunner

    from art_adr.cli import main
    from art_adr.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="extra_sampling"):
        RunConfig(extra_sampling="bootstrap").validate()
    assert with_legacy_defaults({"seed": 0})["extra_sampling"] == "replacement"  # runs written before the field
    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    assert "--extra-sampling [shuffle|replacement]" in help_text
    with pytest.raises(ValueError, match="smaller than the 8 extra images"):
        next(MixedBatches(_mixed().main, torch.zeros(5, 1, 1, 1), torch.zeros(5, dtype=torch.long), FRACTION).epoch(0))


def _train(args: list[str]) -> None:
    from click.testing import CliRunner

    from art_adr.cli import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def test_art_adr_train_with_extra_data_resumes_to_the_same_weights(tmp_path):
    """Stopped after epoch 1 and resumed, a run with generated data ends bit-identical to the uninterrupted run
    (the extra set's passes continue where they were), for both samplings; config.yaml names the sampling."""
    import numpy as np
    import yaml

    from art_adr.checkpoint import load_checkpoint
    from conftest import assert_same

    rng = np.random.default_rng(0)
    npz = tmp_path / "gen.npz"
    np.savez(npz, image=rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8), label=rng.integers(0, 4, 40))
    base = ["train", "--dataset", "synthetic", "--set", "dataset_kwargs={n: 192, shape: [1, 8, 8], num_classes: 4}",
            "--set", "arch_kwargs={in_channels: 1, width: 4}", "--val-size", "32", "--max-iter", "1",
            "--batch-size", "32", "--eps", "0.1", "--set", "eval_max_iter=1", "--val-attack", "pgd",
            "--extra-data", str(npz), "--extra-fraction", "0.5", "--epochs", "3", "-q"]
    for sampling in ("shuffle", "replacement"):
        whole, cut = tmp_path / f"whole-{sampling}", tmp_path / f"cut-{sampling}"
        _train([*base, "--extra-sampling", sampling, "--out", str(whole)])
        _train([*base, "--extra-sampling", sampling, "--stop-after-epochs", "1", "--out", str(cut)])
        _train(["train", "--out", str(cut), "--resume", "-q"])
        assert yaml.safe_load((whole / "config.yaml").read_text())["extra_sampling"] == sampling
        a, b = (load_checkpoint(d / "checkpoints" / "final.pt") for d in (whole, cut))
        assert_same(a["student"], b["student"], sampling)
        assert_same(a["teacher"], b["teacher"], sampling)
