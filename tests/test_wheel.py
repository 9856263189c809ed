"""The package as users get it (issue 29 §4): ``python -m build`` makes an sdist and a wheel that ``twine check``
accepts, the wheel built from the sdist holds the same files, every file of the packages (recipes, the
leaderboard snapshot) is in the wheel, and the wheel — installed, not editable, into a clean venv that holds only
the distributions its ``Requires-Dist`` name (and theirs) — runs ``art-adr --version``, ``art-adr recipes`` and a
tiny Fashion-MNIST train → evaluate (AutoAttack) from a folder away from the tree.

The venv is built as ``test_simulated_host.py`` builds its bare host (``bare_venv``): the dependency closure is
linked from this interpreter's installed distributions, since a clean venv cannot download torch here. A module
imported at run time but not declared in ``pyproject.toml`` is therefore missing there and fails the run.
"""

from __future__ import annotations

import ast
import email
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from bare_venv import clean_env, closure, make_bare_python

ROOT = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# where each source folder lands in the wheel ([tool.setuptools] package-dir)
PACKAGE_DIRS = {"art_adr": "art_adr", "cli": "art_adr/cli", "shims/autoattack": "autoattack"}



def tree_version() -> str:
    """``__version__`` as written in ``art_adr/__init__.py`` (the one place of the version)."""
    module = ast.parse((ROOT / "art_adr" / "__init__.py").read_text())
    for node in module.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("art_adr/__init__.py defines no __version__")


def tree_files(*under: str) -> list[str]:
    """The files of the tree (tracked, or new and not ignored by git; none deleted), relative to it."""
    proc = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z", *under], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("needs a git checkout (the tree's file list), e.g. not an unpacked sdist")
    listed = proc.stdout.split("\0")
    return [p for p in listed if p and (ROOT / p).is_file()]


def package_files() -> set[str]:
    """The files of the packages, as paths inside the wheel."""
    out = set()
    for path in tree_files(*PACKAGE_DIRS):
        for source, target in PACKAGE_DIRS.items():
            if path.startswith(source + "/"):
                out.add(target + path[len(source):])
    return out


def build(*args: str, cwd: Path) -> None:
    """``python -m build --no-isolation ARGS`` (this interpreter's setuptools: nothing downloaded)."""
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"python -m build {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return sorted(zf.namelist())


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(zf.read(name))


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """``(sdist, wheel from the tree, wheel from the sdist)``, built from a copy of the tree's files (a stale
    build/ folder or untracked output never leaks into them, and the tree stays as it is)."""
    root = tmp_path_factory.mktemp("dist")
    src = root / "src"
    for path in tree_files():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, src / path)
    build("--sdist", "--wheel", "--outdir", str(root / "tree"), ".", cwd=src)
    sdist = next((root / "tree").glob("*.tar.gz"))
    build("--wheel", "--outdir", str(root / "from-sdist"), str(sdist), cwd=root)
    return sdist, next((root / "tree").glob("*.whl")), next((root / "from-sdist").glob("*.whl"))


@pytest.mark.slow
def test_sdist_and_wheel_pass_twine_check_and_hold_every_package_file(dists):
    sdist, wheel, wheel_from_sdist = dists
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.count("PASSED") == 2, proc.stdout + proc.stderr
    names = wheel_names(wheel)
    assert wheel_names(wheel_from_sdist) == names  # the sdist holds all that the wheel needs
    version = tree_version()
    assert wheel.name == f"art_adr-{version}-py3-none-any.whl" and sdist.name == f"art_adr-{version}.tar.gz"
    files = set(names)
    missing = sorted(package_files() - files)
    assert not missing, f"files of the packages that the wheel lacks: {missing}"
    assert {f"art_adr/recipes/{p.name}" for p in (ROOT / "art_adr" / "recipes").glob("*.yaml")} <= files
    assert any(n.startswith("art_adr/robustbench/leaderboard-") and n.endswith(".json") for n in names)
    meta = wheel_metadata(wheel)
    assert meta["Version"] == version and meta["License-Expression"] == "MIT"
    assert f"art_adr-{version}.dist-info/licenses/LICENSE" in files
    assert meta.get_all("Project-URL") and meta.get_all("Classifier")
    with tarfile.open(sdist) as tf:
        inside = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"pyproject.toml", "LICENSE", "README.md", "CHANGELOG.md", "tests/conftest.py"} <= inside
    assert not [n for n in inside if "__pycache__" in n or n.endswith(".pyc")]


def install(wheel: Path, venv: Path, requirements: list[str]) -> Path:
    """A bare venv at ``venv`` with the closure of ``requirements`` linked and ``wheel`` installed into it (not
    editable, no dependencies fetched); returns its ``bin`` folder."""
    python = make_bare_python(venv, closure(requirements, strict=True))
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-index", "--no-compile", "-q", str(wheel)], env=clean_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv / "bin"


def run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A command of the venv (``art-adr`` or ``python``), run in ``cwd`` with the venv first on PATH."""
    env = clean_env(PATH=f"{bin_dir}:/usr/bin:/bin")
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def ok(proc: subprocess.CompletedProcess, what: str) -> str:
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


TRAIN = ["art-adr", "train", "--recipe", "fashion-mnist-at-adr", "--data-dir", str(FASHION_MNIST), "--subset", "64",
         "--epochs", "1", "--val-size", "32", "--batch-size", "32", "--max-iter", "1", "--set", "eval_max_iter=1",
         "--device", "cpu", "-q", "--out", "run"]
EVALUATE = ["art-adr", "evaluate", "run", "--attacks", "clean,pgd,aa", "--n-examples", "8", "--eval-max-iter", "2",
            "--device", "cpu", "-q"]


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist (make install)")
def test_the_wheel_runs_in_a_clean_venv_away_from_the_tree(dists, tmp_path):
    _, wheel, _ = dists
    t0 = time.perf_counter()
    requirements = wheel_metadata(wheel).get_all("Requires-Dist")
    bin_dir = install(wheel, tmp_path / "venv", requirements)
    work = tmp_path / "work"
    work.mkdir()
    where = ok(run(bin_dir, "python", "-c", "import art_adr, sys; print(art_adr.__file__); print(sys.path)",
                   cwd=work), "import art_adr")
    assert str(tmp_path / "venv") in where.splitlines()[0] and str(ROOT) not in where, where
    assert ok(run(bin_dir, "art-adr", "--version", cwd=work), "--version").strip() == \
        f"art-adr, version {tree_version()}"
    names = ok(run(bin_dir, "art-adr", "recipes", "-q", cwd=work), "recipes").split()
    assert {"fashion-mnist-at", "fashion-mnist-at-adr", "cifar10-at-adr"} <= set(names)
    ok(run(bin_dir, "python", "-c", "from art_adr.robustbench import leaderboard_table; "
           "assert len(leaderboard_table('cifar10', 'Linf')) > 10", cwd=work), "the leaderboard snapshot")
    ok(run(bin_dir, *TRAIN, cwd=work), "train")
    assert (work / "run" / "checkpoints" / "best.pt").is_file()
    table = ok(run(bin_dir, *EVALUATE, cwd=work), "evaluate")
    assert "AutoAttack" in table and (work / "run" / "evaluation" / "evaluation.json").is_file(), table
    print(f"clean venv: install + version + recipes + train + evaluate in {time.perf_counter() - t0:.0f} s")


def without(wheel: Path, out: Path, drop: str) -> Path:
    """A copy of ``wheel`` (same name, in ``out``) without the files whose names start with ``drop``."""
    out.mkdir()
    copy = out / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if not item.filename.startswith(drop) or item.filename.endswith(".py"):
                dst.writestr(item, src.read(item))
    return copy


@pytest.mark.slow
def test_a_wheel_without_its_recipes_or_a_venv_without_a_dependency_fails_clearly(dists, tmp_path):
    """The check is real: the same install from a wheel that lacks the recipe files, and one whose venv lacks a
    declared dependency (ART, as if pyproject.toml had not declared it), fail with a message naming it."""
    _, wheel, _ = dists
    requirements = wheel_metadata(wheel).get_all("Requires-Dist")
    broken = without(wheel, tmp_path / "broken", "art_adr/recipes/")
    bin_dir = install(broken, tmp_path / "venv-no-recipes", requirements)
    proc = run(bin_dir, "art-adr", "recipes", cwd=tmp_path)
    assert proc.returncode == 2 and "lacks its package data (art_adr/recipes/*.yaml)" in proc.stderr, proc.stderr
    proc = run(bin_dir, "art-adr", "train", "--recipe", "fashion-mnist-at", "--out", "r", cwd=tmp_path)
    assert proc.returncode == 2 and "lacks its package data" in proc.stderr, proc.stderr
    fewer = [r for r in requirements if not r.startswith("adversarial-robustness-toolbox")]
    assert "adversarial-robustness-toolbox" not in {d.metadata["Name"].lower() for d in closure(fewer)}
    bin_dir = install(wheel, tmp_path / "venv-no-art", fewer)
    proc = run(bin_dir, "art-adr", "train", "--dataset", "synthetic", "--epochs", "1", "--device", "cpu", "-q",
               "--out", "r", cwd=tmp_path)
    assert proc.returncode != 0 and "No module named 'art'" in proc.stderr, proc.stderr
