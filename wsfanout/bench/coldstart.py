"""``wsfanout bench coldstart``: what a Lambda cold start of each entrypoint costs.

Three measurements, each in fresh interpreters (a cold container imports everything anew):

- **import**: ``python -X importtime -c "import wsfanout.handlers.route"`` (and the others),
  N times each, interleaved; the total is the sum of the cumulative times of what the
  ``import`` statement loaded (the interpreter's own start-up is left out), with the wall and
  CPU time of the statement beside it (CPU is steadier on a shared machine). The top modules
  are ranked by median cumulative time, and the top packages by the self time of their modules,
  which is what a change saves.
- **invoke** (``--invoke``): Lambda's init (the import) plus the first invocation with a real
  event against moto server (a ``$connect`` that writes the registry, a broadcast job that
  posts to moto's management API, a token the authorizer allows), then a warm invocation: so
  a cut that only moves the cost into the first invocation shows as such.
- **artifact** (``--artifact``): the import from the Lambda artifact itself, with its bytecode
  and without, in Python 3.12 (:mod:`wsfanout.bench.coldartifact`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError, InvalidInputError
from . import ENTRYPOINTS

__all__ = [
    "ColdstartOptions",
    "ImportSample",
    "bytecode_env",
    "fmt_spread",
    "import_summary",
    "parse_importtime",
    "run_coldstart",
    "sample_import",
    "spread",
]

_MARK = "wsfanout-coldstart: import starts"
_CHILD_TIMEOUT_S = 120.0
_JWT_SECRET = "coldstart-secret-of-at-least-32-bytes!"


@dataclass(frozen=True)
class ColdstartOptions:
    """What ``wsfanout bench coldstart`` was asked for."""

    entrypoints: tuple[str, ...] = tuple(ENTRYPOINTS)
    runs: int = 7
    top: int = 12
    invoke: bool = False
    bytecode: str = "cached"
    json_path: str | None = None
    artifact: str | None = None  # a lambda.zip; "": build one here; None: no artifact case
    python: str | None = None  # the Python 3.12 of the artifact case


@dataclass(frozen=True)
class ImportSample:
    """One fresh interpreter's import of one module, in milliseconds."""

    total_ms: float
    wall_ms: float
    cpu_ms: float
    cumulative_ms: dict[str, float] = field(default_factory=dict)
    self_ms: dict[str, float] = field(default_factory=dict)


def parse_importtime(stderr: str) -> tuple[float, dict[str, float], dict[str, float]]:
    """The total, cumulative and self times (ms) of what ``-X importtime`` reported after the
    start mark (the interpreter's own start-up comes before it).

    The total is the sum of the cumulative times of the outermost imports (no indentation):
    each includes every import nested in it, so the sum counts every module once.

    :raises ConfigurationError: when the mark or the import lines are missing.
    """
    _, marked, after = stderr.partition(_MARK)
    if not marked:
        raise ConfigurationError("no start mark in the -X importtime output")
    total = 0.0
    cumulative: dict[str, float] = {}
    self_ms: dict[str, float] = {}
    for line in after.splitlines():
        if not line.startswith("import time:"):
            continue
        own, cumul, name = line.removeprefix("import time:").split("|", 2)
        if not own.strip().isdigit():  # the header line
            continue
        module = name.strip()
        cumulative[module] = int(cumul) / 1000
        self_ms[module] = int(own) / 1000
        if not name.startswith("  "):  # one space follows the bar; nesting adds two each
            total += int(cumul) / 1000
    if not cumulative:
        raise ConfigurationError("no import lines after the start mark")
    return total, cumulative, self_ms


def sample_import(
    module: str,
    env: Mapping[str, str] | None = None,
    *,
    python: Sequence[str] = (sys.executable,),
    root: Path | None = None,
) -> ImportSample:
    """Import ``module`` in a fresh interpreter under ``-X importtime`` and time it.

    ``python`` is the interpreter's command (with its options); ``root``, when given, goes first
    on ``sys.path`` before the clock starts, as Lambda puts ``/var/task`` there.

    :raises ConfigurationError: when the import fails (its last line of error says why).
    """
    code = (
        "import sys, time\n"
        + ("" if root is None else f"sys.path.insert(0, {str(root)!r})\n")
        + f"sys.stderr.write({_MARK!r} + '\\n'); sys.stderr.flush()\n"
        "w, c = time.perf_counter(), time.process_time()\n"
        f"import {module}\n"
        "print((time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000)\n"
    )
    done = subprocess.run(
        [*python, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=dict(env if env is not None else os.environ),
        timeout=_CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigurationError(f"importing {module} failed: {last}")
    wall, cpu = (float(part) for part in done.stdout.split())
    total, cumulative, own = parse_importtime(done.stderr)
    return ImportSample(total, wall, cpu, cumulative, own)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median and quartiles (inclusive method, so two runs give their own range)."""
    if len(values) == 1:
        return {"q1": values[0], "median": values[0], "q3": values[0]}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"q1": q1, "median": median, "q3": q3}


def import_summary(module: str, samples: Sequence[ImportSample], top: int) -> dict[str, Any]:
    """Median and quartiles of each figure of ``samples``, and the ``top`` modules (by
    cumulative time) and packages (by the self time of their modules)."""
    per_module: dict[str, list[float]] = defaultdict(list)
    per_package: dict[str, list[float]] = defaultdict(list)
    own_of: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        by_package: dict[str, float] = defaultdict(float)
        for name, ms in sample.cumulative_ms.items():
            per_module[name].append(ms)
            own_of[name].append(sample.self_ms[name])
            by_package[name.partition(".")[0]] += sample.self_ms[name]
        for name, ms in by_package.items():
            per_package[name].append(ms)
    modules = sorted(per_module, key=lambda n: -statistics.median(per_module[n]))[:top]
    packages = sorted(per_package, key=lambda n: -statistics.median(per_package[n]))[:top]
    return {
        "module": module,
        "total_ms": spread([s.total_ms for s in samples]),
        "wall_ms": spread([s.wall_ms for s in samples]),
        "cpu_ms": spread([s.cpu_ms for s in samples]),
        "modules_loaded": statistics.median(len(s.cumulative_ms) for s in samples),
        "top_modules": [
            {
                "name": name,
                "cumulative_ms": statistics.median(per_module[name]),
                "self_ms": statistics.median(own_of[name]),
            }
            for name in modules
        ],
        "top_packages": [
            {"name": name, "self_ms": statistics.median(per_package[name])} for name in packages
        ],
    }


def _check(entrypoint: str, response: Any) -> None:
    """Refuse a measurement of a cold start that did not do its work."""
    if entrypoint == "route":
        ok = isinstance(response, dict) and response.get("statusCode") == 200
    elif entrypoint == "broadcast":
        ok = response == {"batchItemFailures": []}
    else:
        ok = response["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    if not ok:
        raise ConfigurationError(f"the {entrypoint} handler answered {response!r}")


def _events(entrypoint: str, count: int) -> list[dict[str, Any]]:
    """``count`` real events for ``entrypoint``, as API Gateway and SQS send them."""
    import jwt  # noqa: PLC0415  (bench dependencies load when it runs)

    from .. import testing  # noqa: PLC0415
    from ..aws import events  # noqa: PLC0415
    from ..core.models import BroadcastJob, ConnectionsTarget  # noqa: PLC0415

    if entrypoint == "route":
        return [testing.connect_event(authorizer={"userId": "u_cold"}) for _ in range(count)]
    if entrypoint == "broadcast":
        return [
            testing.sqs_event(
                [BroadcastJob(target=ConnectionsTarget(connection_ids=["coldAbCd="]), data="hi")]
            )
            for _ in range(count)
        ]
    signed = jwt.encode({"sub": "u_cold", "exp": int(time.time()) + 3600}, _JWT_SECRET)
    upgrade = events.Upgrade(headers=(), query=(("token", signed),), port=443, proto="https")
    origin = events.Origin(
        connection_id=events.new_id(),
        authorizer=None,
        domain_name="abcdef1234.execute-api.eu-west-1.amazonaws.com",
        stage="prod",
        api_id="abcdef1234",
        source_ip="203.0.113.42",
        user_agent="wsfanout-coldstart",
        connected_at_ms=events.now_ms(),
    )
    return [events.authorizer_request(origin, upgrade) for _ in range(count)]


def bytecode_env(mode: str, cache: Path) -> dict[str, str]:
    """The environment of the measured interpreters: every module from bytecode in ``cache``
    (``cached``: an artifact shipped with its ``.pyc``, once :func:`run_coldstart` has filled
    it), or every module compiled from source (``none``: what a Lambda container does with an
    artifact without bytecode, as it cannot write any). Either way the figures do not depend on
    which ``__pycache__`` directories the machine happens to hold.

    :raises InvalidInputError: for a mode that is neither.
    """
    if mode not in ("cached", "none"):
        raise InvalidInputError(f"bytecode must be 'cached' or 'none', not {mode!r}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    if mode == "none":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _invoke_env(
    base: Mapping[str, str], moto_url: str, table: str, queue_url: str, scratch: Path
) -> dict[str, str]:
    from ..aws.account import CREDENTIALS, REGION  # noqa: PLC0415

    env = {k: v for k, v in base.items() if not k.startswith(("AWS_", "POWERTOOLS_"))}
    env.update(CREDENTIALS)
    env.update(
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(scratch / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(scratch / "no-aws-credentials"),
        AWS_ENDPOINT_URL=moto_url,
        CONNECTIONS_TABLE=table,
        BROADCAST_QUEUE_URL=queue_url,
        APIGW_MANAGEMENT_ENDPOINT=moto_url,
        AUTH_JWT_SECRET=_JWT_SECRET,
    )
    return env


def _invoke_once(entrypoint: str, env: Mapping[str, str]) -> dict[str, Any]:
    spec = {"module": ENTRYPOINTS[entrypoint], "events": _events(entrypoint, 2)}
    child = Path(__file__).with_name("coldchild.py")
    done = subprocess.run(
        [sys.executable, "-P", str(child), json.dumps(spec)],
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=_CHILD_TIMEOUT_S,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigurationError(f"the {entrypoint} cold start failed: {last}")
    result: dict[str, Any] = json.loads(lines[-1])  # Powertools logs to stdout before it
    for invocation in result["invocations"]:
        _check(entrypoint, invocation["response"])
    return result


def _invocations(options: ColdstartOptions, base: Mapping[str, str]) -> dict[str, Any]:
    import boto3  # noqa: PLC0415  (bench dependencies load when it runs)

    from ..aws.account import KEY_ID, REGION, SECRET  # noqa: PLC0415
    from ..aws.table import table_definition  # noqa: PLC0415
    from ..local.processes import moto_server  # noqa: PLC0415

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in options.entrypoints}
    with moto_server() as moto_url:
        session = boto3.Session(
            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION
        )
        table = f"wsfanout-cold-{uuid.uuid4().hex[:8]}"
        session.client("dynamodb", endpoint_url=moto_url).create_table(**table_definition(table))
        queue_url = session.client("sqs", endpoint_url=moto_url).create_queue(QueueName=table)[
            "QueueUrl"
        ]
        env = _invoke_env(base, moto_url, table, queue_url, Path(f"/nonexistent/{table}"))
        for _ in range(options.runs):
            for name in options.entrypoints:
                runs[name].append(_invoke_once(name, env))
    summary: dict[str, Any] = {}
    for name, results in runs.items():
        first = [r["invocations"][0] for r in results]
        warm = [r["invocations"][1] for r in results]
        summary[name] = {
            "init_ms": spread([r["init_ms"] for r in results]),
            "first_ms": spread([i["ms"] for i in first]),
            "warm_ms": spread([i["ms"] for i in warm]),
            "init_plus_first_ms": spread(
                [r["init_ms"] + i["ms"] for r, i in zip(results, first, strict=True)]
            ),
            "init_plus_first_cpu_ms": spread(
                [r["init_cpu_ms"] + i["cpu_ms"] for r, i in zip(results, first, strict=True)]
            ),
        }
    return summary


def fmt_spread(figures: Mapping[str, float]) -> str:
    """``median (q1-q3)``, in whole numbers."""
    return f"{figures['median']:.0f} ({figures['q1']:.0f}-{figures['q3']:.0f})"


def _print(document: Mapping[str, Any]) -> None:
    from rich.console import Console  # noqa: PLC0415  (bench dependencies load when it runs)
    from rich.table import Table  # noqa: PLC0415

    console = Console()

    def table(title: str, columns: Sequence[str], rows: Mapping[str, Sequence[str]]) -> None:
        shown = Table(title=title)
        for column in ("entrypoint", *columns):
            shown.add_column(column, justify="left" if column == "entrypoint" else "right")
        for name, cells in rows.items():
            shown.add_row(name, *cells)
        console.print(shown)

    imports = document["imports"]
    table(
        f"import in a fresh interpreter, ms: median (q1-q3) of {document['runs']} runs",
        ("-X importtime total", "wall", "CPU", "modules"),
        {
            name: [
                *(fmt_spread(row[key]) for key in ("total_ms", "wall_ms", "cpu_ms")),
                str(round(row["modules_loaded"])),
            ]
            for name, row in imports.items()
        },
    )
    for name, row in imports.items():
        modules = ", ".join(f"{m['name']} {m['cumulative_ms']:.0f}" for m in row["top_modules"])
        packages = ", ".join(f"{p['name']} {p['self_ms']:.0f}" for p in row["top_packages"])
        console.print(f"[bold]{name}[/bold] top modules (cumulative ms): {modules}")
        console.print(f"[bold]{name}[/bold] top packages (self ms): {packages}")
    if "artifact" in document:
        _print_artifact(document["artifact"], document["runs"], table, console.print)
    if "invocations" in document:
        keys = ("init_ms", "first_ms", "init_plus_first_ms", "init_plus_first_cpu_ms", "warm_ms")
        table(
            "init + first invocation against moto server, ms: median (q1-q3)",
            ("init", "first", "init + first", "its CPU", "warm"),
            {
                name: [fmt_spread(row[key]) for key in keys]
                for name, row in document["invocations"].items()
            },
        )


_WALL_CPU = ("wall_ms", "cpu_ms")


def _print_artifact(
    artifact: Mapping[str, Any],
    runs: int,
    table: Callable[[str, Sequence[str], Mapping[str, Sequence[str]]], None],
    say: Callable[[str], None],
) -> None:
    rows: dict[str, list[str]] = {}
    for name, row in artifact["imports"].items():
        cells = []
        for case in (row["with_bytecode"], row["without_bytecode"]):
            cells += ["-"] * 2 if case is None else [f"{case[k]['median']:.0f}" for k in _WALL_CPU]
        ratio = row["ratio"]
        cells += ["-"] * 2 if ratio is None else [f"{ratio[k]:.1f}x" for k in _WALL_CPU]
        rows[name] = cells
    table(
        f"import from the artifact in Python {artifact['python']}, ms: median of {runs} runs",
        (".pyc wall", "CPU", "no .pyc wall", "CPU", "ratio wall", "CPU"),
        rows,
    )
    built = "built here" if artifact["built"] else "given"
    say(
        f"artifact ({built}, {artifact['architecture']}): {artifact['zip']}, "
        f"{artifact['pyc_files']} .pyc files"
    )
    if not artifact["pyc_files"]:
        say("the artifact ships no bytecode: measured without only")
    if artifact.get("note"):
        say(artifact["note"])


def run_coldstart(options: ColdstartOptions) -> int:
    """Measure, print the tables, write the JSON when asked; 0 unless a measurement failed.

    :raises InvalidInputError: for an entrypoint name that is not one of :data:`ENTRYPOINTS`, or
        an ``artifact`` that is no zip, or a ``python`` that is no 3.12.
    :raises ConfigurationError: when an import or a cold start fails, or the artifact case
        cannot run here (no Python 3.12, an artifact for another machine, a failed build).
    """
    unknown = [name for name in options.entrypoints if name not in ENTRYPOINTS]
    if unknown:
        raise InvalidInputError(
            f"unknown entrypoint {unknown[0]!r}; choose from {', '.join(ENTRYPOINTS)}"
        )
    artifact = None
    if options.artifact is not None:  # first: what it cannot measure here fails fast
        # here, not at the top: the artifact case builds on this module's sampling
        from .coldartifact import measure_artifact  # noqa: PLC0415

        artifact = measure_artifact(
            options.artifact,
            options.entrypoints,
            runs=options.runs,
            top=options.top,
            python=options.python,
        )
    with tempfile.TemporaryDirectory(prefix="wsfanout-pycache-") as cache:
        env = bytecode_env(options.bytecode, Path(cache))
        if options.bytecode == "cached":
            for name in options.entrypoints:  # untimed: fills the cache
                sample_import(ENTRYPOINTS[name], env)
        samples: dict[str, list[ImportSample]] = {name: [] for name in options.entrypoints}
        for _ in range(options.runs):  # interleaved, so a busy moment touches every entrypoint
            for name in options.entrypoints:
                samples[name].append(sample_import(ENTRYPOINTS[name], env))
        document: dict[str, Any] = {
            "runs": options.runs,
            "bytecode": options.bytecode,
            "python": sys.version.split()[0],
            "command": f'{sys.executable} -X importtime -c "import MODULE"',
            "imports": {
                name: import_summary(ENTRYPOINTS[name], found, options.top)
                for name, found in samples.items()
            },
        }
        if artifact is not None:
            document["artifact"] = artifact
        if options.invoke:
            document["invocations"] = _invocations(options, env)
    _print(document)
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(document, indent=2) + "\n")
    return 0
