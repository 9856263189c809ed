"""Smoke tests of the benchmark scripts (no timing assertions) and of the FLOP counter."""

from __future__ import annotations

import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from art_adr.methods import METHODS

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import bench_utils  # noqa: E402
import throughput  # noqa: E402


def _positive_finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


class _HandCountNet(nn.Module):
    """Conv(1→4, 3×3, pad 1) on 1×8×8, flatten, Linear(256→3): 2·(256·9) + 2·(256·3) = 6144 FLOPs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_flop_count_matches_hand_count() -> None:
    hand = 2 * (4 * 8 * 8) * (1 * 3 * 3) + 2 * 3 * 256
    assert hand == 6144
    net = _HandCountNet()
    assert bench_utils.forward_flops(net, (1, 8, 8)) == (hand, "art_adr.models.count_flops")


def test_flop_count_strided_grouped_conv() -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    hand = 2 * (8 * 4 * 4) * (2 * 9) + 2 * 2 * 128
    assert bench_utils.forward_flops(net, (4, 8, 8))[0] == hand


def test_benchmarks_share_the_librarys_flop_counter_and_device_picker() -> None:
    assert not hasattr(bench_utils, "hook_count_flops")
    assert bench_utils.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(SystemExit, match="unknown device"):
        bench_utils.resolve_device("tpu")


def test_forward_equivalents_convention() -> None:
    fe = bench_utils.forward_equivalents
    assert fe("at", 10, adr=False, awp=False) == 33  # (K + 1)·3F
    assert fe("at", 10, adr=True, awp=False) == 34  # + teacher forward
    assert fe("at", 10, adr=True, awp=False, minimal=True) == 24  # the 24 forward-equivalents
    assert fe("trades", 10, adr=False, awp=False) == 37  # + clean fwd+bwd + clean KL-target forward
    assert fe("trades-ce", 10, adr=False, awp=False) == 36
    assert fe("at", 10, adr=False, awp=True) == 36
    assert fe("mart", 10, adr=True, awp=True) == 30 + 6 + 1 + 6  # clean and adversarial fwd+bwd, + AWP's
    assert fe("standard", 10, adr=True, awp=False) == 3 + 1  # no attack: the loss and the teacher forward
    with pytest.raises(ValueError, match=", ".join(METHODS.names())):
        fe("no-such-method", 10, adr=False, awp=False)


def _check_result(out: Path, expected_rows: set[str]) -> dict:
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "throughput"
    for key in ("date", "git_commit", "torch", "device", "device_name", "machine"):
        assert key in saved["environment"]
    assert saved["paper_table6_a6000_s_per_epoch"]["cifar10"]["resnet18"]["+ADR"] == 83
    (block,) = saved["configs"]
    assert block["forward_gflops_per_image"] > 0
    rows = {r["row"]: r for r in block["rows"]}
    assert set(rows) == expected_rows
    for row in rows.values():
        for key in ("images_per_s", "epoch_s", "ms_per_batch", "tflops", "peak_mem_mb", "fwd_equiv_per_image"):
            assert _positive_finite(row[key]), (row["row"], key, row[key])
    assert "adr_overhead_pct" in block["summary"]["targets"]
    return block


def test_throughput_tiny_smoke(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    rows = ("ours-at", "ours-at-adr", "art-madry-bs", "plain-pgd-at")
    result = throughput.main(["--preset", "tiny", "--device", "cpu", "--iters", "1", "--warmup", "1", "--threads",
                              "1", "--rows", ",".join(rows), "--out", str(out), "--quiet"])
    block = _check_result(out, set(rows))
    for key in ("adr_overhead_pct_at", "ours_at_vs_art_madry_bs", "ours_at_vs_plain"):
        assert math.isfinite(block["summary"][key])
    assert len(result["configs"]) == 1
    assert "ours-at-adr" in throughput.render(result)


@pytest.mark.slow
def test_throughput_tiny_all_rows(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    throughput.main(["--preset", "tiny", "--device", "cpu", "--iters", "1", "--warmup", "1", "--threads", "1",
                     "--out", str(out), "--quiet"])
    expected = set(throughput.ALL_ROWS) - {"ours-at-fp32"}  # the fp32 row only when a speed option is on
    block = _check_result(out, expected)
    for key in ("adr_overhead_pct_at", "ours_at_vs_art_madry", "ours_trades_vs_art_trades", "fit_loader_overhead_pct"):
        assert math.isfinite(block["summary"][key])


def test_throughput_rows_flag_and_unknown_row() -> None:
    args = throughput.parse_args(["--preset", "h100", "--rows", "ours-at,plain-pgd-at", "--amp", "none"])
    configs = throughput.configs_from_args(args)
    assert len(configs) == 3
    assert all(c.rows == ("ours-at", "plain-pgd-at") and c.amp is None for c in configs)
    with pytest.raises(SystemExit):
        throughput.configs_from_args(throughput.parse_args(["--rows", "nope"]))


def test_speed_options_resets_dynamo_before_every_variant(monkeypatch) -> None:
    """The fast check: every timed variant starts after a ``torch._dynamo.reset()`` and records its graphs."""
    import speed_options

    events = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: events.append("reset"))

    def fake_step(model, cfg, device, key, compiled):
        events.append(cfg.compile)
        compiled.update({"student forward": {"graphs": 1}} if cfg.compile else {})
        return [0.01]

    monkeypatch.setattr(speed_options, "time_ours_step", fake_step)
    monkeypatch.setattr(speed_options, "time_ema", lambda *a, **k: {"fused_us": 1.0, "naive_us": 1.0, "speedup": 1.0,
                                                                  "max_abs_diff": 0.0, "tensors": 0})
    result = speed_options.main(["--preset", "tiny", "--device", "cpu", "--compile", "--no-fp16"])
    timed = [e for e in events if e != "reset"]
    assert timed and all(events[events.index(e, i) - 1] == "reset" for i, e in enumerate(events) if e != "reset")
    assert events.count("reset") >= 1 + len(timed)  # per configuration and per variant
    rows = result["configs"][0]["variants"]
    assert {r["variant"]: bool(r["compile_stats"]) for r in rows}["bf16+channels_last+reduce-overhead"]


@pytest.mark.slow
def test_speed_options_resets_dynamo_between_variants_and_counts_graphs(monkeypatch) -> None:
    """Each compiled variant starts from an empty Dynamo cache (issue 15: from its third configuration
    ``--compile`` used to time eager code labelled "compile"), and its graphs are recorded."""
    import speed_options

    import art_adr.compiling as compiling

    monkeypatch.setattr(compiling, "BACKEND", "eager")
    resets = []
    original = torch._dynamo.reset
    monkeypatch.setattr(torch._dynamo, "reset", lambda: (resets.append(1), original())[1])
    monkeypatch.setattr(speed_options, "time_ema", lambda *a, **k: {"fused_us": 1.0, "naive_us": 1.0, "speedup": 1.0,
                                                                  "max_abs_diff": 0.0, "tensors": 0})
    monkeypatch.setattr(speed_options, "VARIANTS", {k: v for k, v in speed_options.VARIANTS.items()
                                                    if k in ("fp32", "compile")})
    result = speed_options.main(["--preset", "tiny", "--device", "cpu", "--iters", "1", "--warmup", "1",
                                 "--compile", "--no-fp16"])
    rows = {r["variant"]: r for r in result["configs"][0]["variants"]}
    assert len(resets) >= 1 + len(rows)  # per configuration and per variant
    assert rows["fp32"]["compile_stats"] == {}
    assert "error" not in rows["compile"], rows["compile"]
    assert rows["compile"]["compile_stats"]["student forward"]["graphs"] > 0  # compiled, not eager


def test_throughput_suite_preset_lists_the_resnet18_rows(capsys) -> None:
    result = throughput.main(["--preset", "suite", "--list", "--device", "cpu"])
    configs = result["configs"]
    assert [c["compile"] for c in configs] == [False, True, "reduce-overhead"]
    split = [throughput.PRESETS[p] for p in ("suite-eager", "suite-compiled")]
    assert [c.compile for c in split[0]] == [False] and split[0] + split[1] == throughput.PRESETS["suite"]
    assert all(c["arch"] == "resnet18" and c["amp"] == "bf16" and c["channels_last"] for c in configs)
    assert {"ours-at-adr", "art-madry-bs", "art-trades", "plain-pgd-at"} <= set(configs[0]["rows"])
    assert "resnet18-32px-bf16-cl-compile" in capsys.readouterr().out


REPO = BENCH_DIR.parent


def _dry_run(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(["bash", str(BENCH_DIR / "gpu_suite.sh"), "--dry-run", "--out", str(tmp_path / "o"),
                           *args], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", **(env or {})})


def test_gpu_suite_dry_run_resolves_every_step_without_cuda(tmp_path: Path) -> None:
    proc = _dry_run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "dry run: every step resolves" in out and "FAIL" not in out
    for needed in ("module art ", "module click ", "module yaml ", "module pytest ", "module pyautoattack ",
                   "module cloudpickle ", "module sklearn ", "step tests: pytest collects the cuda tests",
                   "host c-compiler: ", "host numpy: ", "host gpu: torch sees no CUDA GPU",
                   "step tests-compiled: pytest collects the cuda tests",
                   "step throughput: --preset suite-eager resolves",
                   "step throughput-compiled: --preset suite-compiled resolves", "summary writer runs without a GPU"):
        assert needed in out, needed
    assert not (tmp_path / "o" / "suite.json").exists()  # a dry run runs nothing


@pytest.mark.slow
def test_gpu_suite_dry_run_names_what_does_not_resolve(tmp_path: Path) -> None:
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("click==8.0  click\nnot-a-package==1.0  not_a_module_xyz\n")
    proc = _dry_run(tmp_path, "--wheels", str(tmp_path / "empty"), "--steps", "throughput",
                    env={"GPU_SUITE_REQUIREMENTS": str(reqs)})
    assert proc.returncode == 1
    assert "FAIL  module not_a_module_xyz: not importable and no wheel for not-a-package==1.0" in proc.stdout
    assert "ok    module click imports here" in proc.stdout and "dry run: some checks failed" in proc.stdout
    assert _dry_run(tmp_path, "--steps", "nope").returncode == 2


def test_gpu_wheels_list_is_pinned_and_documented() -> None:
    """gpu_wheels.sh downloads exactly benchmarks/gpu_requirements.txt; the README lists each wheel."""
    pins = [line.split()[0] for line in (BENCH_DIR / "gpu_requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins and all(p.count("==") == 1 for p in pins)
    names = [p.split("==")[0].lower() for p in pins]
    assert len(set(names)) == len(names)
    assert not {"torch", "numpy", "scipy"} & set(names)  # preinstalled
    assert {"cloudpickle", "pyautoattack"} <= set(names)  # joblib's import; apgd, the default validation attack
    assert not {"matplotlib", "pillow", "fonttools", "kiwisolver", "contourpy"} & set(names)  # plots: not drawn
    readme = (BENCH_DIR / "README.md").read_text().lower()
    for p in pins:
        stem = p.split("==")[0].lower().replace("-", "_").replace(".", "_")
        assert f"{stem}-{p.split('==')[1]}".lower() in readme, p
    script = (BENCH_DIR / "gpu_wheels.sh").read_text()
    assert "--no-deps" in script and "--only-binary=:all:" in script and "TARGET=3.12" in script
    assert '--python-version "$TARGET"' in script and "git archive HEAD" in script


def test_ro_verdicts_pairs_by_seed_and_judges_plainly(tmp_path: Path) -> None:
    import ro_verdicts

    def row(method: str, seed: int, best: float, final: float) -> dict:
        return {"kind": "seed", "method": method, "which": "student", "seed": seed, "aa_best": best,
                "aa_final": final, "aa_diff": best - final}

    rows = [row("AT", 0, 55, 50), row("AT", 1, 56, 52), row("AT", 2, 55, 51), row("AT + ADR (τ 2→1.5)", 0, 55, 54),
            row("AT + ADR", 1, 56, 55.5), row("AT + ADR", 2, 55, 54.5),
            row("MART", 0, 56, 56), row("MART", 1, 56, 56), row("MART", 2, 56, 56), row("MART + ADR", 0, 56.5, 56.4),
            row("MART + ADR", 1, 56.5, 56.4), row("MART + ADR", 2, 56.5, 56.4), row("TRADES", 3, 50, 50),
            row("TRADES + ADR", 3, 50, 45), row("TRADES", 4, 50, 50), row("AWP", 0, 50, 45), row("AWP", 1, 50, 45),
            row("AWP + ADR", 0, 50, 49), row("AWP + ADR", 1, 50, 49)]
    (tmp_path / "t.json").write_text(json.dumps({"rows": rows}))
    at, mart, trades, awp = ro_verdicts.compare(ro_verdicts._seed_rows([str(tmp_path / "t.json")]))
    assert at["seeds"] == [0, 1, 2] and at["final_gain"][0] == pytest.approx(11 / 3) and at["raised_final"] == "yes"
    assert at["reduced_gap"] == "yes"
    assert mart["raised_final"] == "within noise"  # +0.4 pp: under 1 pp
    # fewer than 3 paired seeds: no firm verdict, however large the difference (issue 29)
    assert trades["seeds"] == [3] and trades["raised_final"] == trades["reduced_gap"] == "one seed: no verdict"
    assert awp["seeds"] == [0, 1] and awp["raised_final"] == awp["reduced_gap"] == "2 seeds: no verdict"
    ro_verdicts.main([str(tmp_path / "t.json"), "--out", str(tmp_path / "v")])
    text = (tmp_path / "v.md").read_text()
    assert text.count("\n") == 6  # header, rule, AT, MART, TRADES, AWP
    trades_line = next(line for line in text.splitlines() if line.startswith("| TRADES"))
    assert "±" not in trades_line and "lowered" not in trades_line and "no verdict" in trades_line


def test_ro_verdicts_pairs_a_variant_with_the_base_runs_of_the_same_seed(tmp_path: Path) -> None:
    import ro_verdicts

    def row(seed: int, best: float, final: float, which: str = "student") -> dict:
        return {"kind": "seed", "method": "AT + ADR", "which": which, "seed": seed, "aa_best": best,
                "aa_final": final, "aa_diff": best - final}

    (tmp_path / "base.json").write_text(json.dumps({"rows": [row(s, 56, 54) for s in (0, 1, 2)] + [row(3, 1, 1)]}))
    variant = [row(0, 56, 50), row(1, 56, 51), row(2, 57, 50), row(0, 60, 60, "teacher")]  # no teacher base
    (tmp_path / "v.json").write_text(json.dumps({"rows": variant}))
    ro_verdicts.main([str(tmp_path / "v.json"), "--against", str(tmp_path / "base.json"), "--label", "student BN",
                      "--out", str(tmp_path / "out")])
    (entry,) = json.loads((tmp_path / "out.json").read_text())["entries"]
    assert entry["seeds"] == [0, 1, 2] and entry["final_gain"][0] == pytest.approx(-11 / 3)
    assert entry["raised_final"] == "no, lowered it" and entry["reduced_gap"] == "no, widened it"
    assert "student BN final AA" in (tmp_path / "out.md").read_text()


def test_calibration_pairs_models_by_seed_and_judges_against_the_paper(tmp_path: Path) -> None:
    import calibration

    def model(ece: float, js: float, ood: float, clean: float = 0.3) -> dict:
        entropy = {"ood": {"mean": ood}, "clean": {"mean": clean}, "adv": {"mean": clean},
                   "incorrect": {"mean": clean + 0.1}}
        return {"ece_clean": ece, "ece_adv": ece, "js": {"mean": js}, "entropy": entropy, "accuracy": 0.8,
                "adv_accuracy": 0.5}

    files = []
    for seed, (ece_at, ece_adr) in enumerate([(0.20, 0.10), (0.22, 0.12), (0.18, 0.09)]):
        folder = tmp_path / f"ro3-s{seed}-apgd"
        folder.mkdir()
        models = {"AT": model(ece_at, 0.05, 1.0), "AT+ADR": model(ece_adr, 0.05 + 0.001 * seed, 0.5)}
        if seed < 2:  # a standard model on two seeds only: its pair has no verdict, the other pair keeps 3 seeds
            models["Standard"] = model(0.3, 0.5, 0.2, clean=0.1)
        text = json.dumps({"models": models})
        if seed == 2:  # committed analyses are gzipped
            (folder / "analysis.json.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (folder / "analysis.json").write_text(text)
        files.append(str(next(folder.glob("analysis.json*"))))
    calibration.main([*files, "--pairs", "AT:AT+ADR,Standard:AT", "--out", str(tmp_path / "cal")])
    entries = json.loads((tmp_path / "cal.json").read_text())["rows"]
    got = {r["metric"]: r for r in entries if r["pair"] == ["AT", "AT+ADR"]}
    assert got["ECE clean"]["seeds"] == [0, 1, 2] and got["ECE clean"]["diff"][0] == pytest.approx(-0.0966667)
    assert got["ECE clean"]["verdict"] == "as the paper says"  # lower, as §3.2 expects
    assert got["JS clean↔adv"]["verdict"] == "within noise"
    assert got["entropy OOD"]["verdict"] == "the opposite"  # the paper expects more uncertainty out of distribution
    assert got["accuracy clean"]["verdict"] == "" and got["entropy clean (test)"]["verdict"] == ""
    robust = {r["metric"]: r for r in entries if r["pair"] == ["Standard", "AT"]}
    assert robust["entropy clean (test)"]["seeds"] == [0, 1] and robust["entropy clean (test)"]["expect"] == "higher"
    assert robust["ECE clean"]["verdict"] == "2 seed(s): no verdict"
    assert "| Standard → AT | ro3 | apgd | entropy OOD | 0,1 |" in (tmp_path / "cal.md").read_text()
    with pytest.raises(ValueError, match="<regime>-s<seed>-<attack>"):
        calibration.read([str(tmp_path / "cal.json")])
    with pytest.raises(ValueError, match="A:B"):
        calibration.parse_pairs("AT")


def test_compare_runs_finds_the_first_difference_and_ignores_timings_and_descriptions():
    import compare_runs

    a = {"student": {"w": torch.ones(3)}, "history": [{"loss": 1.0, "seconds": 2.0}], "config": {"x": 1}}
    b = {"student": {"w": torch.ones(3)}, "history": [{"loss": 1.0, "seconds": 9.0}], "config": {"x": 2}}
    keep = {k: v for k, v in a.items() if k not in compare_runs.DESCRIPTIONS}
    assert compare_runs.same(keep, {k: v for k, v in b.items() if k not in compare_runs.DESCRIPTIONS}, "c") is None
    b["student"]["w"] = torch.tensor([1.0, 1.0, 1.0 + 1e-7])
    assert compare_runs.same(a, b, "c") == "c.config.x: 1 != 2"
    assert compare_runs.same(keep, {"student": b["student"], "history": b["history"]}, "c") == "c.student.w"
    assert compare_runs.same([1], [1, 2], "m") == "m: lengths 1 != 2"


def test_ro_phases_split_the_gap_at_the_decay():
    import ro_phases

    hist = [{"epoch": e, "apgd_acc": a} for e, a in ((2, 0.50), (4, 0.56), (6, 0.52), (8, 0.55), (10, 0.49))]
    p = ro_phases.phases(hist, "apgd_acc", decay_epoch=6)
    assert (p["peak"], p["peak_epoch"], p["at_decay"], p["final"]) == pytest.approx((56.0, 4, 52.0, 49.0))
    assert p["lost_before_decay"] == pytest.approx(4.0) and p["lost_after_decay"] == pytest.approx(3.0)
    assert p["gap"] == pytest.approx(7.0)
    late = ro_phases.phases(hist[:2] + [{"epoch": 8, "apgd_acc": 0.60}, {"epoch": 10, "apgd_acc": 0.58}],
                            "apgd_acc", decay_epoch=6)  # the peak after the decay: nothing lost before it
    assert late["lost_before_decay"] == 0.0 and late["gap"] == pytest.approx(2.0)
    runs = [dict(seed=s, adr=adr, **ro_phases.phases(hist, "apgd_acc", 6)) for s in (0, 1) for adr in (False, True)]
    summary = ro_phases.summarise(runs)
    assert summary["seeds"] == [0, 1] and summary["paired"]["gap"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="no 'pgd_acc'"):
        ro_phases.phases(hist, "pgd_acc", 6)
