"""Robustness evaluation (the former module ``art_adr.evaluation``, now a package)."""

from .pipeline import *  # noqa: F403
from .pipeline import (  # noqa: F401
    __all__,
    autoattack_settings,
    capture_autoattack_warnings,
    configure_paper_protocol,
    describe_autoattack,
    val_attack_flags,
)
