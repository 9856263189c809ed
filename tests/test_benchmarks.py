"""Smoke tests of the benchmark scripts (no timing assertions) and of the FLOP counter."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

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
    with pytest.raises(ValueError, match="at, trades, mart"):
        fe("fgsm", 10, adr=False, awp=False)


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
