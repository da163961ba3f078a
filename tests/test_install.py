"""``pip install wsfanout`` is lean: the bare package, in a fresh virtualenv, sends.

The wheel is built from this checkout and installed with no extra into a new virtualenv; a
fan-out run there (a child process of that interpreter) reaches the local management endpoint
and the registry on moto server, both served by this test process. The extras' packages (rich,
Powertools, PyJWT) are neither installed there nor imported by the sender path, and the
``wsfanout`` script there names the extra its command line needs.

The wheel is built by the project's build backend (hatchling, from the test extra) called in
this process through its PEP 517 hook, as ``pip wheel`` would call it, without the isolated build
environment pip would first fetch it into. Dependencies come from this test's own virtualenv,
not the index: each distribution wsfanout's requirements reach is linked (or, across file
systems, copied) file by file from its ``RECORD`` (offline, and seconds rather than the index's
tens of), and ``pip check`` then proves the bare install complete and consistent. Run these
alone with ``pytest -m install``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import uuid
from contextlib import chdir
from pathlib import Path

import anyio
import pytest
from hatchling import build
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from wsfanout.aws.table import table_definition
from wsfanout.local.management import ManagementEndpoint, serve

pytestmark = [pytest.mark.install, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
EXTRAS_MODULES = ("rich", "aws_lambda_powertools", "jwt")
STAGE = "test"


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` reach (extras they name included), as installed here.

    ``packaging`` (pytest's own dependency) reads the requirements and evaluates their markers.
    """
    seen: set[tuple[str, str]] = set()
    todo = [(Requirement(each), "") for each in requirements]
    while todo:
        requirement, extra_of_parent = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra_of_parent}):
            continue
        name = canonicalize_name(requirement.name)
        for extra in {"", *requirement.extras}:
            if (name, extra) not in seen:
                seen.add((name, extra))
                requires = importlib.metadata.requires(name) or []
                todo.extend((Requirement(each), extra) for each in requires)
    return {name for name, _ in seen}


def _copy_distribution(name: str, site: Path) -> None:
    distribution = importlib.metadata.distribution(name)
    for file in distribution.files or []:
        if file.parts[0] == "..":
            continue  # console scripts: not needed to import
        # bytecode comes along (valid: a link or copy2 keeps the source's mtime), so that the
        # bare interpreter, the same Python, does not compile botocore and pydantic again
        source = Path(str(distribution.locate_file(file)))
        if source.is_file():
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            try:  # a hard link: the same bytes, no copy (the files are only ever read)
                os.link(source, target)
            except OSError:  # another file system
                shutil.copy2(source, target)


def _run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(  # noqa: S603  (our own interpreters, fixed arguments)
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding wsfanout's wheel and its dependencies, no extra; its Python."""
    base = tmp_path_factory.mktemp("bare")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    with chdir(ROOT):  # PEP 517: the backend's hooks run in the source tree
        wheel = base / build.build_wheel(str(base))
    _run(sys.executable, "-m", "venv", "--without-pip", base / "venv")
    python = base / "venv" / "bin" / "python"
    _run(*pip, "--python", python, "install", "--no-deps", "--no-index", wheel)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")[:-1])
    with (ROOT / "pyproject.toml").open("rb") as file:
        requires: list[str] = tomllib.load(file)["project"]["dependencies"]
    for name in sorted(_closure(requires)):
        _copy_distribution(name, site)
    _run(*pip, "--python", python, "check")
    return python


def test_the_wheel_ships_the_browser_client(bare: Path) -> None:
    """``wsfanout dev`` serves ``/wsfanout.js`` from the package: the wheel must carry it."""
    site = Path(_run(bare, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")[:-1])
    static = site / "wsfanout" / "local" / "static"
    assert {"index.html", "wsfanout.js", "wsfanout.d.ts"} <= {p.name for p in static.iterdir()}


def test_the_bare_install_has_no_extra(bare: Path) -> None:
    installed = json.loads(
        _run(
            bare,
            "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))",
        )
    )
    assert {"aioboto3", "anyio", "pydantic", "pydantic-settings", "aiohttp"} <= set(installed)
    assert not {"rich", "aws-lambda-powertools", "pyjwt", "moto", "websockets"} & set(installed)


SENDER = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime

    import anyio
    from wsfanout import AllTarget, App, Clients, Connection, Settings


    async def main() -> None:
        async with Clients(Settings()) as clients:
            registry = await clients.registry()
            now = datetime.now(UTC)
            for cid in ("c1", "c2", "c3"):
                await registry.put(Connection(connection_id=cid, connected_at=now))
            report = await (await clients.fanout()).run(AllTarget(all=True), b"lean")
            queue = await clients.job_queue()
        async with App() as app:  # a backend's send, from outside any route
            sent = await app.send({"via": "app"}, connection="c1")
        loaded = sorted(
            name for name in sys.modules if name.partition(".")[0] in sys.argv[1].split(",")
        )
        print(json.dumps({
            "delivered": report.delivered, "gone": report.gone, "failed": report.failed,
            "queue": type(queue).__name__, "app_delivered": sent.delivered, "loaded": loaded,
        }))


    anyio.run(main)
    """
)


async def test_a_fan_out_runs_on_the_bare_install(
    bare: Path, moto_url: str, dynamodb, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = f"lean-{uuid.uuid4().hex[:8]}"
    await dynamodb.create_table(**table_definition(table))
    fake = ManagementEndpoint(live=["c1", "c2"])  # c3 has closed: 410, removed from the registry
    async with serve(fake) as url:
        monkeypatch.setenv("CONNECTIONS_TABLE", table)
        monkeypatch.setenv("APIGW_MANAGEMENT_ENDPOINT", f"{url}/{STAGE}")
        monkeypatch.setenv("BROADCAST_QUEUE_URL", f"{moto_url}/123456789012/lean")
        with anyio.fail_after(60):
            done = await anyio.run_process(
                [str(bare), "-c", SENDER, ",".join(EXTRAS_MODULES)],
                env=dict(os.environ),
                check=False,
            )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout)
    assert result == {
        "delivered": 2,
        "gone": 1,
        "failed": 0,
        "queue": "JobQueue",
        "app_delivered": 1,
        "loaded": [],
    }
    assert fake.received("c1") == [b"lean", b'{"via":"app"}']
    assert fake.received("c2") == [b"lean"]
    items = await dynamodb.scan(TableName=table)
    assert "c3" not in json.dumps(items["Items"])


def test_the_command_line_names_its_extra(bare: Path) -> None:
    script = bare.parent / "wsfanout"
    assert script.is_file(), "pip installed the console script"
    done = subprocess.run(  # noqa: S603  (the script of our own test virtualenv)
        [str(script), "broadcast", "--data", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "wsfanout: error: rich is not installed; it comes with the [cli] extra: "
        "pip install 'wsfanout[cli]'"
    ]


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("wsfanout.handlers.route", "aws_lambda_powertools", "lambda"),
        ("wsfanout.handlers.authorizer", "aws_lambda_powertools", "lambda"),
        # the App's Lambda side (its logger, the runtime); its event models are pydantic's alone
        ("wsfanout.handlers.runtime", "aws_lambda_powertools", "lambda"),
        ("wsfanout.local.demo", "moto", "local"),
    ],
)
def test_the_edges_name_their_extra(bare: Path, module: str, missing: str, extra: str) -> None:
    done = subprocess.run(  # noqa: S603  (our own test virtualenv's interpreter)
        [str(bare), "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"wsfanout.exceptions.ConfigurationError: {missing} is not installed; "
        f"it comes with the [{extra}] extra: pip install 'wsfanout[{extra}]'"
    )
