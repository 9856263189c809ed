"""The documentation site: MkDocs builds it strictly (a broken link or anchor, or a public object without a
docstring, fails), and a real headless browser (Debian's chromium) renders its pages with their navigation, images
and API reference; a screenshot of the home page is kept in ``ci-artifacts/`` (not committed)."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "ci-artifacts"
sys.path.insert(0, str(ROOT / "docs"))
import hooks  # noqa: E402  (docs/hooks.py: the strict build's docstring check)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium (make install brings Debian's)")
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={"NO_MKDOCS_2_WARNING": "1",
                                                                            "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _dom(url: str) -> str:
    proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_pages_render_with_navigation_images_and_api(site):
    _, base = site
    home = _dom(base + "/")
    assert "md-nav" in home and "User guide" in home and "API reference" in home
    science = _dom(base + "/science/robust-overfitting/")
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', science)
    assert len(images) >= 3
    for src in images:
        with urllib.request.urlopen(urllib.request.urlopen(base + "/science/robust-overfitting/").url + src) as r:
            assert r.status == 200 and r.read(8) == b"\x89PNG\r\n\x1a\n"
    guide = _dom(base + "/guide/python-api/")  # the README's example, included from README.md (one source)
    assert "get_teacher_classifier" in guide and "--8<--" not in guide
    api = _dom(base + "/reference/trainers/")
    assert "AdversarialTrainerADR" in api and "fit_generator" in api and "md-nav" in api


def test_registry_tables_are_generated_from_the_registries(site):
    from art_adr.architectures import ARCHITECTURES
    from art_adr.attacks.base import attack_names
    from art_adr.config import list_recipes
    from art_adr.data import DATASETS
    from art_adr.launch import LAUNCHERS
    from art_adr.loggers import LOGGERS
    from art_adr.methods import METHODS

    out, _ = site
    page = (out / "reference" / "registries" / "index.html").read_text()
    names = [*attack_names(), *METHODS, *DATASETS, *ARCHITECTURES, *LOGGERS, *LAUNCHERS, *list_recipes()]
    assert "registries -->" not in page and [n for n in names if f"<code>{n}</code>" not in page] == []


def test_home_page_screenshot(site):
    _, base = site
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "docs-home.png"
    shot.unlink(missing_ok=True)
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,900", f"--screenshot={shot}", base + "/"], capture_output=True, timeout=120)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_every_reference_module_is_documented_and_the_check_catches_a_gap(tmp_path, monkeypatch):
    modules = hooks.documented_modules(ROOT / "docs")
    assert "art_adr.trainer" in modules and len(modules) >= 10
    assert all(hooks.undocumented(m) == [] for m in modules)
    planted = '__all__ = ["f", "g"]\n\n\ndef f():\n    """Has one."""\n\n\ndef g():\n    pass\n'
    (tmp_path / "planted.py").write_text(planted)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert hooks.undocumented("planted") == ["planted.g"]


def test_readme_links_resolve():
    """Every relative link of README.md names a file of the repository (the docs pages it points into)."""
    text = (ROOT / "README.md").read_text()
    links = [m for m in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text) if not m.startswith("http")]
    assert links and all((ROOT / link).exists() for link in links), [x for x in links if not (ROOT / x).exists()]


def test_readme_is_the_front_door():
    """README.md: at most 250 lines, its commands table generated from the CLI's commands (``commands_table``),
    every command named."""
    from art_adr.cli import COMMANDS, commands_table

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert commands_table() in text
    assert all(f"`art-adr {name}`" in text for name in COMMANDS)


def test_design_lists_every_default():
    """docs/DESIGN.md's row of art_adr/defaults.py names every constant of the module."""
    import art_adr.defaults as defaults

    row = next(line for line in (ROOT / "docs" / "DESIGN.md").read_text().splitlines()
               if line.startswith("| `art_adr/defaults.py`"))
    names = [n for n in vars(defaults) if n.isupper() and not n.startswith("_")]
    assert len(names) >= 9 and [n for n in names if f"`{n}`" not in row] == []
