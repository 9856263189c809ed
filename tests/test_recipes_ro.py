"""The Fashion-MNIST robust-overfitting recipes: one regime, four methods that differ only in the method."""

from __future__ import annotations

from art_adr.config import resolve_config

METHODS = {"at": ("at", False), "at-adr": ("at", True), "trades": ("trades", False), "trades-adr": ("trades", True)}


def test_regime_recipes_share_everything_but_the_method():
    configs = {m: resolve_config(f"fashion-mnist-ro-{m}").to_dict() for m in METHODS}
    for m, (method, adr) in METHODS.items():
        c = configs[m]
        assert (c["method"], c["adr"]) == (method, adr)
        assert c["dataset"] == "fashion-mnist" and c["arch"] == "mlp" and c["arch_kwargs"] == {"hidden": 512}
        assert c["eps"] == 0.1 and c["subset"] == 1000 and c["val_split"] == "holdout" and not c["augment"]
    varying = {"method", "adr", "temperature", "interpolation", "recipe", "description"}
    base = {k: v for k, v in configs["at"].items() if k not in varying}
    for c in configs.values():
        assert {k: v for k, v in c.items() if k not in varying} == base
    # both ADR recipes use the τ/λ chosen by the hold-out sweep (benchmarks/README.md)
    assert configs["at-adr"]["temperature"] == configs["trades-adr"]["temperature"]
    assert configs["at-adr"]["interpolation"] == configs["trades-adr"]["interpolation"]


def test_second_regime_recipes_differ_from_the_first_only_in_the_calibrated_settings():
    """fashion-mnist-ro2-*: another MLP and training-set size, the first regime's τ/λ (no re-tuning)."""
    for m, (method, adr) in METHODS.items():
        first = resolve_config(f"fashion-mnist-ro-{m}").to_dict()
        second = resolve_config(f"fashion-mnist-ro2-{m}").to_dict()
        changed = {k for k in first if first[k] != second[k]}
        assert changed == {"arch_kwargs", "subset", "batch_size", "epochs", "eval_every", "save_every", "recipe",
                           "description"}
        assert second["arch_kwargs"] == {"hidden": 512, "depth": 3} and second["subset"] == 500
        assert (second["method"], second["adr"]) == (method, adr)
