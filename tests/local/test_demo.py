"""`wsfanout demo`, small: every live client gets each message once, every closed one is gone."""

from __future__ import annotations

import pytest

from tests.helpers import run_wsfanout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_passes_and_reports_every_figure() -> None:
    result = run_wsfanout("demo", "--clients", "60", "--rooms", "3", timeout=240)
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
    result = run_wsfanout("demo", "--clients", "0")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
