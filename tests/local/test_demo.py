"""`wsfanout demo`, small: every live client gets each message once, every closed one is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

WSFANOUT = str(Path(sys.executable).parent / "wsfanout")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_passes_and_reports_every_figure() -> None:
    result = subprocess.run(  # noqa: S603  (our own console script)
        [WSFANOUT, "demo", "--clients", "60", "--rooms", "3"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for figure in (
        "connected",
        "broadcast delivered",
        "room message delivered",
        "gone cleaned up",
        "duplicates",
        "missing",
        "elapsed",
        "deliveries/s",
    ):
        assert figure in result.stdout
    assert "OK" in result.stdout


def test_demo_rejects_bad_arguments() -> None:
    result = subprocess.run(  # noqa: S603
        [WSFANOUT, "demo", "--clients", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
