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
