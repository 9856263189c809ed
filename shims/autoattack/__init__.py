"""``autoattack``: the upstream AutoAttack API (Croce & Hein, github.com/fra31/auto-attack) over PyPI's
``pyautoattack``, installed by art-adr.

RobustBench 1.1.1 runs ``from autoattack import AutoAttack`` and ``from autoattack.state import
EvaluationState`` when it is imported. The upstream package is not on PyPI; ``pyautoattack`` is the same code
under another module name, with keyword-only, renamed arguments. This module gives it the upstream names and
signatures (``art_adr.robustbench.upstream.fill_autoattack_module``), so that a plain ``import robustbench`` works in a
fresh interpreter. With the upstream git package installed too, both provide ``autoattack`` and whichever
Python finds first is used; RobustBench works with either.
"""

import sys

from art_adr.robustbench.upstream import fill_autoattack_module

fill_autoattack_module(sys.modules[__name__])
