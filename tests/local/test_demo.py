"""`wsfanout demo`, small: every live client gets each message once, every closed one is gone."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from tests.helpers import run_wsfanout
from wsfanout.local.demo import DemoOptions, run_demo

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_passes_and_reports_every_figure(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    result = run_wsfanout(
        "demo", "--clients", "60", "--rooms", "3", "--log-file", str(log), timeout=240
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
        "shutdown",
        "deliveries/s, end to end",
    ):
        assert figure in result.stdout
    assert "OK" in result.stdout
    # the handlers' logs and metrics went to the log file, named, and none to the terminal
    assert f"logs and metrics: {log}" in result.stdout
    assert "stopping: closing 54 sockets (no $disconnect" in result.stdout
    assert "{" not in result.stdout + result.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any("_aws" in line and "Delivered" in line for line in lines), "EMF metrics"
    assert any(line.get("message") == "connected" for line in lines), "Powertools log lines"


def test_demo_rejects_bad_arguments() -> None:
    result = run_wsfanout("demo", "--clients", "0")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_terminal_shows_bars_and_report_and_no_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal rich would print what goes to stdout above its bars; it must not."""
    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, width=120)
    log = tmp_path / "demo.log"
    options = DemoOptions(clients=30, rooms=2, log_file=log)
    assert run_demo(options, console=console) == 0
    shown = terminal.getvalue()
    assert "broadcast (via SQS)" in shown
    assert "OK" in shown
    assert '"_aws"' not in shown
    assert '"level"' not in shown
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
    assert '"_aws"' in log.read_text()


@pytest.mark.parametrize(
    ("target", "extras"),
    [("demo", "local,cli,lambda"), ("dev", "local,cli,lambda"), ("package", "lambda")],
)
def test_make_installs_only_what_the_target_runs(tmp_path: Path, target: str, extras: str) -> None:
    """A first ``make demo`` installs the local stack's extras, ``make package`` the handlers':
    no dev toolchain, no checkov."""
    planned = subprocess.run(  # noqa: S603  (make, on this checkout's Makefile)
        ["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],  # noqa: S607  (make from PATH, as a user runs it)
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    installs = [line for line in planned.splitlines() if "pip install" in line]
    assert installs[-1].endswith(f"-e '.[{extras}]'")
    assert "checkov" not in planned
    assert "[dev]" not in planned
