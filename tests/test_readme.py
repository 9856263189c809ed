"""The README's Python example runs as written (on a smaller Fashion-MNIST slice)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = next(b for b in blocks if "AdversarialTrainerADR(clf" in b)
    code = code.replace("train.x[:2000]", "train.x[:1024]").replace("train.y[:2000]", "train.y[:1024]")
    code = code.replace("max_iter=10,", "max_iter=2,")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    trainer = namespace["trainer"]
    assert len(trainer.history) == 2 and "teacher_pgd_acc" in trainer.history[-1]
    assert trainer.history[-1]["teacher_clean_acc"] > 0.2  # twice chance (0.1): the teacher learned (0.35 measured)
    assert namespace["wa_clf"].predict(namespace["x_test"][:4]).shape == (4, 10)
    assert namespace["robust_clf"] is namespace["clf"]
