"""The documentation site's strict build: clean as shipped, and failing on what a reader would
trip over (a missing page, a missing anchor, an unresolved API reference).

Each build runs on a copy of ``mkdocs.yml`` and ``docs/`` so a broken page never touches the
tree; ``make docs`` builds the real one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def build(tmp_path: Path, extra: str = "") -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of a copy of the site, ``extra`` appended to the quickstart."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    if extra:
        with (tmp_path / "docs" / "quickstart.md").open("a") as page:
            page.write(f"\n{extra}\n")
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(  # noqa: S603  (this interpreter, fixed arguments)
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.timeout(300)
def test_the_site_builds_strictly_with_the_api_reference(tmp_path: Path) -> None:
    result = build(tmp_path)
    assert result.returncode == 0, result.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert 'id="wsfanout.core.fanout.Fanout.run"' in reference
    # Sphinx roles in docstrings became links or code, never raw ``:class:`` text
    assert ":class:`" not in reference
    assert ":meth:`" not in reference


BROKEN_LINKS = {
    "[a page](nowhere.md)": "'nowhere.md', but the target is not found",
    "[an anchor](concepts.md#nowhere)": "does not contain an anchor '#nowhere'",
    "[a name][wsfanout.core.fanout.Nowhere]": "'wsfanout.core.fanout.Nowhere'",
}


@pytest.mark.timeout(300)
def test_broken_links_fail_the_build_each_named(tmp_path: Path) -> None:
    result = build(tmp_path, "\n\n".join(BROKEN_LINKS))
    assert result.returncode != 0
    for complaint in BROKEN_LINKS.values():
        assert complaint in result.stderr


@pytest.mark.timeout(300)
def test_an_unknown_api_reference_fails_the_build(tmp_path: Path) -> None:
    result = build(tmp_path, "::: wsfanout.core.nowhere")
    assert result.returncode != 0
    assert "wsfanout.core.nowhere could not be found" in result.stderr


def fenced_blocks(path: Path, language: str) -> list[str]:
    """The ```language blocks of a Markdown file, in order."""
    return [part.split("```", 1)[0] for part in path.read_text().split(f"```{language}\n")[1:]]


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return fenced_blocks(path, "python")


def without_comments(code: str) -> list[str]:
    return [line.split("  #", 1)[0].rstrip() for line in code.splitlines()]


def test_the_home_page_shows_the_readmes_tested_app() -> None:
    """The README's first App runs as printed (tests/app/test_guide.py); the site's home page
    shows the same code, with shorter comments to fit its width."""
    readme = python_blocks(ROOT / "README.md")[0]
    home = python_blocks(ROOT / "docs" / "index.md")[0]
    assert without_comments(home) == without_comments(readme)


def test_the_testing_page_shows_tested_examples() -> None:
    """The doubles example runs as printed in the README (tests/test_testing.py), the
    TestClient example as printed in the App guide (tests/app/test_guide.py)."""
    shown = python_blocks(ROOT / "docs" / "testing.md")
    readme = (ROOT / "README.md").read_text().split("### Testing code built on it", 1)[1]
    assert readme.split("```python\n", 1)[1].split("```", 1)[0] in shown
    guide_test = python_blocks(ROOT / "docs" / "app.md")[1]
    assert guide_test.replace("# tests/test_app.py\n", "") in shown
