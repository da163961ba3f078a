"""The wsfanout command line: a thin edge over the core.

(The first line is ``wsfanout --help``'s description, printed as it is: plain text, no markup.)
It reads arguments, builds :class:`~wsfanout.settings.Settings` (arguments override the
environment), runs one core coroutine and prints the result. Exit status: 0 when nothing failed,
1 when some sends failed, gone connections could not be removed, or a broadcast was interrupted
(it then prints its partial report and a resume token), 2 for bad input or configuration,
always with a one-line reason.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
from botocore.exceptions import NoCredentialsError, NoRegionError
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..aws.clients import Clients
from ..bench.commands import add_bench_commands
from ..core import models
from ..core.fanout import RunHooks
from ..core.models import MAX_PAYLOAD_BYTES, Cursor, FanoutReport
from ..exceptions import (
    ConfigurationError,
    DeliveryError,
    InvalidInputError,
    MidRunRegistryError,
    QueueError,
    RegistryError,
)
from ..settings import Settings
from .arguments import (
    OneLineParser,
    add_throttle_arguments,
    add_version_option,
    port,
    positive_float,
    positive_int,
)
from .connections import add_connections_command
from .dlq import add_dlq_command
from .jobs import add_jobs_command
from .new import add_new_command
from .package import add_package_command
from .resume import MAX_TOTAL_SEGMENTS, ResumeToken, payload_sha256
from .signals import stoppable
from .tokens import add_token_command

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (also used by the docs and tests)."""
    parser = OneLineParser(
        prog="wsfanout", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_version_option(parser)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    _add_broadcast_command(commands)

    add_bench_commands(commands)
    add_new_command(commands)
    add_package_command(commands)
    # the operator's commands (issue 17): one module each
    add_connections_command(commands)
    add_jobs_command(commands)
    add_dlq_command(commands)
    add_token_command(commands)

    dev = commands.add_parser(
        "dev",
        help="run the whole stack on this machine until Ctrl-C",
        description="Start moto server (DynamoDB, SQS), the API Gateway WebSocket emulator and "
        "the SQS event source mappings of a SAM/CloudFormation template (deploy/template.yaml "
        "or template.yaml here by default), each function in worker processes of its own, or "
        "with --app (or no template) the built-in stack in this process; print the WebSocket, "
        "management and page URLs and the variables a second shell needs.",
    )
    dev.add_argument(
        "--port",
        type=port,
        default=0,
        help="port of the WebSocket, management and page server (default: a free one)",
    )
    dev.add_argument(
        "--stage", type=_stage, help="stage name (default: the template's, else local)"
    )
    dev.add_argument(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        help="serve every route with this wsfanout.App or Lambda handler, imported from the "
        "current directory (as in main:app); default: the built-in chat handler",
    )
    dev.add_argument(
        "--moto-port",
        type=port,
        default=0,
        help="port of moto server (DynamoDB, SQS); give both ports to keep every address, and so "
        "the exports, the same across restarts (default: a free one)",
    )
    dev.add_argument(
        "--idle-timeout",
        type=positive_float,
        metavar="SECONDS",
        help="close a connection idle this long with 1001 (default: AWS's 600)",
    )
    dev.add_argument(
        "--max-lifetime",
        type=positive_float,
        metavar="SECONDS",
        help="close a connection this old with 1001 (default: AWS's 7200)",
    )
    dev.add_argument(
        "--frame-bytes",
        type=positive_int,
        metavar="BYTES",
        help="close a connection that sends a larger frame with 1009 (default: AWS's 32768)",
    )
    add_throttle_arguments(dev)
    dev.add_argument(
        "--reload",
        action="store_true",
        help="with --app, restart the stack when a .py file under the app's directory changes; "
        "with a template, restart its functions cold when a file under its directory changes",
    )
    # -- a template's stack (wsfanout.local.dev_template) --
    dev.add_argument(
        "--template",
        type=Path,
        metavar="PATH",
        help="run this SAM/CloudFormation template's WebSocket API (default: deploy/template.yaml "
        "or template.yaml in the current directory, else the built-in stack)",
    )
    dev.add_argument(
        "--parameter",
        type=_parameter,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a template parameter's value (repeatable; as sam's --parameter-overrides)",
    )
    dev.set_defaults(run=_cmd_dev)

    conformance = commands.add_parser(
        "conformance",
        help="check that a WebSocket API behaves like API Gateway (local stack or AWS stage)",
        description="Run one check per API Gateway behaviour against a stage, through its two "
        "URLs and the environment's credentials and region (for the local stack: eval the "
        "exports wsfanout dev prints), and print behaviour -> result. Exit 1 if any check fails.",
    )
    conformance.add_argument("--ws", required=True, metavar="URL", help="wss://.../{stage}")
    conformance.add_argument(
        "--management", required=True, metavar="URL", help="https://.../{stage} (@connections)"
    )
    conformance.add_argument(
        "--check",
        action="append",
        dest="checks",
        metavar="BEHAVIOUR",
        help="run only this check (repeatable; the names are the table's rows)",
    )
    conformance.add_argument("--json", action="store_true", help="print one JSON array")
    conformance.set_defaults(run=_cmd_conformance)

    demo = commands.add_parser(
        "demo",
        help="the whole system end to end on this machine, with a report",
        description="Start the local stack, connect N WebSocket clients (some join rooms, some "
        "close abruptly, some vanish without $disconnect), broadcast through SQS and send a "
        "room message; exit 0 only if every live client got each message exactly once and "
        "every closed connection left the registry.",
    )
    demo.add_argument("--clients", type=positive_int, default=1000)
    demo.add_argument("--rooms", type=positive_int, default=5)
    demo.add_argument(
        "--log-file",
        type=Path,
        metavar="PATH",
        help="where the local stack's logs and metrics go (default: a new temporary file)",
    )
    demo.set_defaults(run=_cmd_demo)
    return parser


def _add_broadcast_command(commands: Any) -> None:
    """``wsfanout broadcast``: the fan-out engine run from this machine."""
    send = commands.add_parser(
        "broadcast",
        help="send one message to all connections, a room, users or listed connections",
        description="Run the fan-out engine directly (no queue) and print its report.",
    )
    payload = send.add_mutually_exclusive_group(required=True)
    payload.add_argument("--data", help="the text frame to send")
    payload.add_argument("--data-base64", help="a binary frame, base64-encoded")
    payload.add_argument(
        "--data-file", metavar="PATH", help="send this file's bytes ('-' reads standard input)"
    )
    target = send.add_mutually_exclusive_group()
    target.add_argument("--room", help="every member of this room")
    target.add_argument(
        "--user", action="append", dest="users", metavar="USER", help="a user (repeatable)"
    )
    target.add_argument(
        "--connection",
        action="append",
        dest="connections",
        metavar="ID",
        help="a connection id (repeatable); default target: every connection",
    )
    send.add_argument(
        "--exclude", action="append", default=[], metavar="ID", help="never send to this id"
    )
    send.add_argument("--table", help="registry table (default: $CONNECTIONS_TABLE)")
    send.add_argument(
        "--endpoint",
        help="management endpoint https://{domain}/{stage} (default: $APIGW_MANAGEMENT_ENDPOINT)",
    )
    send.add_argument("--concurrency", type=positive_int, help="senders in the pool")
    send.add_argument(
        "--segment",
        type=int,
        metavar="K",
        help="scan only parallel-scan segment K of an 'all' broadcast (needs --total-segments)",
    )
    send.add_argument(
        "--total-segments",
        type=positive_int,
        metavar="N",
        help="how many segments the 'all' broadcast is split into (one run per segment)",
    )
    send.add_argument(
        "--resume",
        metavar="TOKEN",
        help="continue the interrupted broadcast this token (from its report) names; give the "
        "same message again, and no target or segment options",
    )
    send.add_argument("--json", action="store_true", help="print the report as one JSON object")
    send.set_defaults(run=_cmd_broadcast)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wsfanout`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "input"
        return _fail(f"invalid {where}: {first['msg']}")
    except (ConfigurationError, InvalidInputError, DeliveryError) as exc:
        return _fail(str(exc))
    except (NoRegionError, NoCredentialsError) as exc:
        return _fail(f"{exc} (set AWS_REGION and credentials, or use the local stack)")
    except (RegistryError, QueueError) as exc:
        sys.stderr.write(f"wsfanout: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("wsfanout: interrupted\n")
        return 130


def _fail(reason: str) -> int:
    sys.stderr.write(f"wsfanout: error: {reason}\n")
    return EXIT_USAGE


# -- broadcast ------------------------------------------------------------------------------------


def _target(args: argparse.Namespace) -> models.Target:
    if args.room:
        return models.RoomTarget(room=args.room)
    if args.users:
        return models.UsersTarget(user_ids=args.users)
    if args.connections:
        return models.ConnectionsTarget(connection_ids=args.connections)
    return models.AllTarget(all=True)


def _payload(args: argparse.Namespace) -> bytes:
    if args.data_file is not None:
        try:
            data = (
                sys.stdin.buffer.read()
                if args.data_file == "-"
                else Path(args.data_file).read_bytes()
            )
        except OSError as exc:
            raise InvalidInputError(f"cannot read --data-file {args.data_file}: {exc}") from None
    elif args.data_base64 is not None:
        try:
            data = base64.b64decode(args.data_base64, validate=True)
        except binascii.Error as exc:
            raise InvalidInputError(f"--data-base64 is not valid base64: {exc}") from None
    else:
        data = str(args.data).encode()
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidInputError(
            f"the message is {len(data)} bytes; API Gateway accepts at most {MAX_PAYLOAD_BYTES}"
        )
    return data


def _plan(args: argparse.Namespace, payload: bytes) -> ResumeToken:
    """What this run is to do, as a token at its start: the target, the segment, the cursor
    (``--resume``'s, else the start of the stream).

    :raises InvalidInputError: a bad segment pair, segments of a non-"all" target, ``--resume``
        with target or segment options, a bad token or another message than the token's.
    """
    token: ResumeToken | None = None
    if args.resume is not None:
        given = (args.room, args.users, args.connections, args.segment, args.total_segments)
        if any(option is not None for option in given):
            raise InvalidInputError(
                "--resume carries the target and segment: drop --room, --user, --connection, "
                "--segment and --total-segments"
            )
        token = ResumeToken.decode(args.resume)
        token.check_payload(payload)
        target, segment, total = token.target, token.segment, token.total_segments
    else:
        target, segment, total = _target(args), args.segment, args.total_segments
    if (segment is None) != (total is None):
        raise InvalidInputError("--segment and --total-segments go together")
    if segment is not None and total is not None:
        if not isinstance(target, models.AllTarget):
            raise InvalidInputError(
                "--segment applies only to a broadcast to every connection (no --room, --user "
                "or --connection)"
            )
        if not 0 <= segment < total <= MAX_TOTAL_SEGMENTS:
            raise InvalidInputError(
                f"--segment {segment} --total-segments {total}: need 0 <= K < N <= "
                f"{MAX_TOTAL_SEGMENTS}"
            )
    if token is not None:
        return token
    return ResumeToken(
        target=target,
        sha256=payload_sha256(payload),
        cursor=Cursor(),
        segment=segment,
        total_segments=total,
    )


def _cmd_broadcast(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.table:
        overrides["connections_table"] = args.table
    if args.endpoint:
        overrides["apigw_management_endpoint"] = args.endpoint
    if args.concurrency:
        overrides["fanout_concurrency"] = args.concurrency
    settings = Settings(**overrides)
    settings.require_table()
    payload = _payload(args)
    plan = _plan(args, payload)
    if not isinstance(plan.target, models.ConnectionsTarget):
        settings.require_endpoint()
    err = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("broadcast: {task.completed} connections attempted"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=args.json or not err.is_terminal,
    ) as progress:
        task = progress.add_task("broadcast", total=None)

        async def go(stop: anyio.Event) -> tuple[FanoutReport, MidRunRegistryError | None]:
            async with Clients(settings) as clients:
                fanout = await clients.fanout()
                try:
                    report = await fanout.run(
                        plan.target,
                        payload,
                        exclude=args.exclude,
                        segment=plan.segment,
                        total_segments=plan.total_segments,
                        cursor=plan.cursor if args.resume is not None else None,
                        stop=stop,
                        hooks=RunHooks(progress=lambda n: progress.advance(task, n)),
                    )
                except MidRunRegistryError as exc:  # the registry failed: report what finished
                    return exc.report, exc
                return report, None

        (report, registry_error), signalled = anyio.run(stoppable, go)
    token = None
    if report.resume is not None:
        token = plan.model_copy(update={"cursor": report.resume}).encode()
    if args.json:
        sys.stdout.write(
            json.dumps({**report.model_dump(mode="json"), "resume_token": token}) + "\n"
        )
    else:
        Console().print(report_table(report))
        if token is not None:
            sys.stdout.write(f"resume with: wsfanout broadcast --resume {token} (same message)\n")
    if registry_error is not None:
        sys.stderr.write(f"wsfanout: interrupted: {registry_error}\n")
    elif signalled:
        sys.stderr.write("wsfanout: interrupted\n")
    # a gone connection left registered is met again by every broadcast: a failure too; so is
    # an interrupted run, even if it had nothing left
    failed = report.failed or report.cleanup_failed or token is not None or signalled
    return EXIT_FAILED if failed else EXIT_OK


def report_table(report: FanoutReport, title: str = "broadcast") -> Table:
    """One row per figure, as people read reports."""
    table = Table(title=title, show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("delivered", str(report.delivered)),
        ("gone (removed from registry)", f"{report.gone} ({report.cleaned_up})"),
        ("failed", str(report.failed)),
        *((f"  failed: {reason}", str(n)) for reason, n in sorted(report.failed_by_reason.items())),
        ("excluded", str(report.excluded)),
        ("retries", str(report.retries)),
        ("throttled (429)", str(report.throttled)),
        ("elapsed", f"{report.elapsed_s:.3f} s"),
        ("rate", f"{report.rate:,.0f} connections/s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _cmd_conformance(args: argparse.Namespace) -> int:
    from ..local.conformance import open_target, run_checks  # noqa: PLC0415  (loads aiohttp ws)

    async def go() -> list[Any]:
        async with open_target(args.ws, args.management) as target:
            return await run_checks(target, args.checks)

    results = anyio.run(go)
    if args.json:
        rows = [{"behaviour": r.name, "result": r.outcome, "detail": r.detail} for r in results]
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        table = Table(title=f"conformance of {args.management}")
        for column in ("behaviour", "result", "detail"):
            table.add_column(column)
        styles = {"pass": "green", "fail": "bold red", "skip": "yellow"}
        for result in results:
            table.add_row(
                result.name, f"[{styles[result.outcome]}]{result.outcome}[/]", result.detail
            )
        Console(width=160).print(table)
    return EXIT_FAILED if any(r.outcome == "fail" for r in results) else EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..local.demo import DemoOptions, run_demo  # noqa: PLC0415  (the local extra)

    options = DemoOptions(clients=args.clients, rooms=args.rooms, log_file=args.log_file)
    try:
        return run_demo(options)
    except OSError as exc:
        return _fail(f"cannot write the log file {args.log_file}: {exc.strerror or exc}")


# -- dev ------------------------------------------------------------------------------------------


def _stage(text: str) -> str:
    """An API Gateway stage name; the rule lives with the local stack, loaded only for ``dev``."""
    from ..local.stack import check_stage  # noqa: PLC0415  (the local stack loads for dev only)

    try:
        return check_stage(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_dev(args: argparse.Namespace) -> int:
    template = _dev_template(args)
    if args.reload and template is None:  # a template reloads its functions in place
        return _dev_reloading(args)
    from ..local.stack import run_dev  # noqa: PLC0415  (the local stack loads for dev only)

    try:
        return run_dev(_dev_options(args, template))
    except OSError as exc:  # the port is taken, or not ours to bind
        return _fail(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}")


_DEV_LIMITS = {"idle_timeout": "idle_timeout_s", "max_lifetime": "max_lifetime_s"}


def _dev_options(args: argparse.Namespace, template: Path | None = None) -> Any:
    """``dev``'s flags as :class:`~wsfanout.local.stack.DevOptions` (checked: bad values raise
    :class:`~wsfanout.exceptions.InvalidInputError` before anything starts); ``template`` is
    the one :func:`_dev_template` chose."""
    from ..local.emulator import Limits  # noqa: PLC0415
    from ..local.management import throttle_of  # noqa: PLC0415  (the local stack: dev only)
    from ..local.stack import DevOptions  # noqa: PLC0415

    limits: dict[str, Any] = {
        field: getattr(args, flag)
        for flag, field in _DEV_LIMITS.items()
        if getattr(args, flag) is not None
    }
    if args.frame_bytes is not None:
        limits["frame_bytes"] = args.frame_bytes
    throttle = throttle_of(args)
    return DevOptions(
        port=args.port,
        moto_port=args.moto_port,
        stage=args.stage,
        app=args.app,
        limits=Limits(**limits),
        account_rate=None if throttle is None else throttle.rate,
        account_burst=1 if throttle is None else throttle.burst,
        template=template,
        parameters=dict(args.parameter),
        reload=args.reload,
    )


def _dev_flags(args: argparse.Namespace) -> list[str]:
    """The flags a ``dev --reload`` child gets again (everything but ``--reload``)."""
    flags = ["--port", str(args.port), "--moto-port", str(args.moto_port)]
    if args.stage:
        flags += ["--stage", args.stage]
    for flag in ("idle_timeout", "max_lifetime", "frame_bytes", "account_rate", "account_burst"):
        value = getattr(args, flag)
        if value is not None:
            flags += ["--" + flag.replace("_", "-"), str(value)]
    return flags


# -- dev on a template ----------------------------------------------------------------------------

_DEFAULT_TEMPLATES = (Path("deploy") / "template.yaml", Path("template.yaml"))


def _parameter(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (the value may be empty or hold ``=``)."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _dev_template(args: argparse.Namespace) -> Path | None:
    """The template ``dev`` runs: ``--template``, else (without ``--app``) the first of
    ``deploy/template.yaml`` (this project) and ``template.yaml`` (a ``wsfanout new`` project,
    SAM's default name) in the current directory; ``None``: the in-process stack.

    :raises InvalidInputError: ``--template`` with ``--app``, or ``--parameter`` with no
        template to apply it to.
    """
    if args.template is not None and args.app:
        raise InvalidInputError("--template and --app are exclusive: give one")
    template: Path | None = args.template
    if template is None and not args.app:
        template = next((path for path in _DEFAULT_TEMPLATES if path.is_file()), None)
    if template is None and args.parameter:
        raise InvalidInputError("--parameter needs a template (--template PATH)")
    return template


def _dev_reloading(args: argparse.Namespace) -> int:
    """``dev --reload``: this process supervises a ``dev`` child without ``--reload`` (see
    :mod:`wsfanout.local.reload`); the app is checked to exist here, but imported only there."""
    from ..local.apps import app_directory  # noqa: PLC0415  (the local stack loads for dev only)
    from ..local.reload import run_reloading  # noqa: PLC0415

    if not args.app:
        return _fail("--reload needs --app MODULE:ATTRIBUTE (the app whose files it watches)")
    _dev_options(args)  # bad values are refused here, not by every restarted child
    directory = app_directory(args.app)
    child = [sys.executable, "-m", "wsfanout.cli", "dev", *_dev_flags(args)]
    return run_reloading([*child, "--app", args.app], directory, sys.stdout)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
