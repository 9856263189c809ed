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


SHRINK = {"--epochs 20": "--epochs 1 --subset 128 --val-size 64 --max-iter 2 --eval-max-iter 2",
          "--n-examples 200": "--n-examples 8"}


def quick_start() -> tuple[list[list[str]], str]:
    """README's quick start: its shell commands (split, comments dropped) and the ``load.py`` Python block."""
    import shlex

    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    shell = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    python = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    return [shlex.split(line, comments=True) for line in shell.splitlines() if line.strip()], python


def run_quick_start(cwd: Path, art_adr: list[str], python: str, shrink: bool = True) -> list[str]:
    """Run README's quick start in ``cwd`` with ``art_adr`` as the command (``[python, "-m", "art_adr.cli"]`` or
    an installed ``art-adr``) and ``python`` for ``load.py``; returns each step's output."""
    import os
    import subprocess

    commands, load_py = quick_start()
    (cwd / "load.py").write_text(load_py)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outputs = []
    for words in commands:
        line = " ".join(words)
        for old, new in (SHRINK.items() if shrink else ()):
            line = line.replace(old, new)
        words = line.split()
        argv = [*art_adr, *words[1:]] if words[0] == "art-adr" else [python, *words[1:]]
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout + proc.stderr)
    return outputs


def test_readme_quick_start_runs_as_written(tmp_path):
    """Train → AutoAttack → RobustBench-format bundle → check → loaded back with torch alone (``python -I``), the
    README's commands as written on a smaller budget (fewer epochs, images and attack steps)."""
    import sys

    outputs = run_quick_start(tmp_path, [sys.executable, "-m", "art_adr.cli"], sys.executable)
    assert len(outputs) == 5
    assert "AutoAttack" in outputs[1] and "RobustBench has no L∞ leaderboard" in outputs[2]
    assert "passes the checks" in outputs[3]
    assert outputs[4].startswith("Normalized [") and (tmp_path / "bundle" / "load_bundle.py").is_file()
