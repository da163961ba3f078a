"""The local stack's examples run as printed: the echo template and its handler on the Local
development page, served by the test the API reference's local stack page shows (a real
templated stack: moto server, the function in a worker process, a real WebSocket client).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.docs.test_site import ROOT, fenced_blocks


def printed(page: str, language: str, first_line: str) -> str:
    """The block of ``page`` (under docs/) that starts with the comment ``first_line``."""
    blocks = fenced_blocks(ROOT / "docs" / page, language)
    found = [block for block in blocks if block.startswith(first_line + "\n")]
    assert len(found) == 1, f"{page}: one {language} block starting {first_line!r}"
    return found[0]


@pytest.mark.timeout(120)
async def test_the_echo_template_passes_the_reference_pages_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "template.yaml").write_text(
        printed("local-development.md", "yaml", "# template.yaml")
    )
    (tmp_path / "src" / "app.py").write_text(
        printed("local-development.md", "python", "# src/app.py")
    )
    test_code = printed("reference/local.md", "python", "# tests/test_echo.py")
    namespace: dict[str, Any] = {}
    exec(compile(test_code, "docs/reference/local.md", "exec"), namespace)  # noqa: S102  (our docs)
    monkeypatch.chdir(tmp_path)  # the page's test runs from the template's directory
    await namespace["test_a_frame_comes_back_to_its_sender"]()
