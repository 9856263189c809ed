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


def _markdown_outside_code(path: Path) -> list[tuple[int, str]]:
    lines, inside = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            lines.append((number, line))
    return lines


def test_markdown_tables_are_well_formed():
    """Every table row of README and benchmarks/README starts and ends with '|' and has the column count of the
    rows above it (a pasted fragment such as 'AUTO| ...' or a row with a missing cell fails)."""
    for path in (README, README.parent / "benchmarks" / "README.md", *sorted((README.parent / "docs").rglob("*.md"))):
        columns = None
        for number, line in _markdown_outside_code(path):
            where = f"{path.name}:{number}"
            if not line.startswith("|"):
                columns = None
                assert line.count(" | ") < 2 or "`" in line, f"{where}: a row not starting with '|': {line[:60]!r}"
                continue
            assert line.rstrip().endswith("|"), f"{where}: a table row not ending with '|'"
            cells = line.rstrip().count("|") - 1 - line.count("\\|")
            columns = cells if columns is None else columns
            assert cells == columns, f"{where}: {cells} cells in a table of {columns}"
