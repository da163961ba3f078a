"""The ``wsfanout bench`` command line: the comparison and its modes (scaling, distributed, quota,
jobs, e2e).

Only argparse lives here; each command loads the bench's dependencies (moto, boto3, matplotlib)
when it runs, so ``wsfanout --help`` and the other commands never pay for them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..cli.arguments import (
    OneLineParser,
    non_negative,
    positive_float,
    positive_int,
    positive_ints,
    rate,
)
from ..core.pacing import PACINGS
from ..exceptions import InvalidInputError
from . import ALGORITHMS, DEFAULT_ALGORITHMS, ENTRYPOINTS

if TYPE_CHECKING:
    from .harness import Scenario

__all__ = ["add_bench_commands"]


def _algorithms(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    unknown = [name for name in names if name not in ALGORITHMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown algorithm {unknown[0]!r}; choose from {', '.join(ALGORITHMS)}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"an algorithm is listed twice: {text}")
    return names


def _scenario_options(parser: argparse.ArgumentParser, *, gone: float, gateway: bool) -> None:
    faults = parser.add_argument_group("the management endpoint's behaviour")
    faults.add_argument(
        "--latency", type=non_negative, help="seconds per request (default 0.02; 0 for moto)"
    )
    faults.add_argument("--jitter", type=non_negative, default=0.0, help="extra 0..J seconds")
    faults.add_argument(
        "--gone-rate",
        type=rate,
        default=gone,
        help=f"fraction of ids gone (default {gone:g}; 0 for moto)",
    )
    faults.add_argument("--throttle-rate", type=rate, default=0.0, help="fraction of POSTs 429")
    faults.add_argument("--error-rate", type=rate, default=0.0, help="fraction of POSTs 500")
    faults.add_argument("--seed", type=int, default=1, help="seed of every fault decision")
    faults.add_argument(
        "--tls",
        action="store_true",
        help="serve the endpoint over HTTPS, as on AWS, with a certificate made for the run "
        "and trusted by the algorithms explicitly",
    )
    if gateway:
        faults.add_argument(
            "--gateway",
            choices=("local", "moto"),
            default="local",
            help="post to the local endpoint (default) or moto's own management API "
            "(no latency, no faults, no delivery records)",
        )
    parser.set_defaults(default_gone=gone)


def _scenario(args: argparse.Namespace) -> Scenario:
    from .harness import Scenario  # noqa: PLC0415  (bench dependencies load when it runs)

    gateway = getattr(args, "gateway", "local")
    moto = gateway == "moto"
    return Scenario(
        latency_s=(0.0 if moto else 0.020) if args.latency is None else args.latency,
        jitter_s=args.jitter,
        gone_rate=0.0 if moto and args.gone_rate == args.default_gone else args.gone_rate,
        throttle_rate=args.throttle_rate,
        error_rate=args.error_rate,
        seed=args.seed,
        gateway=gateway,
        tls=args.tls,
    )


def _plot_checked(args: argparse.Namespace) -> str | None:
    if args.plot:
        from .plot import require_matplotlib  # noqa: PLC0415

        require_matplotlib()
    return str(args.plot) if args.plot else None


def add_bench_commands(commands: Any) -> None:
    """Add ``bench`` and its modes to the ``wsfanout`` subcommands."""
    bench = commands.add_parser(
        "bench",
        help="benchmarks against moto server and the local management endpoint",
        description="Without a mode: seed N classic registry items in moto server and "
        "broadcast to them with each algorithm in turn (seed: the classic sequential loop; "
        "gather: one unbounded asyncio.gather; floor: bare signed POSTs, the practical limit; "
        "floor-raw: the same over bare asyncio connections, no HTTP library; "
        "engine: wsfanout), each in a process of its own, against one management endpoint "
        "process with injected latency and faults. Prints deliveries/s, CPU per delivery, peak "
        "RSS, requests and correctness, with ratios to seed and floor. seed runs once; the "
        "others --repeat times, interleaved, and the median is shown. Exits 1 when an engine "
        "run missed, duplicated or left a gone connection behind (the baselines may fail).",
    )
    bench.add_argument("--connections", type=positive_int, default=5000)
    bench.add_argument(
        "--concurrency", type=positive_int, default=128, help="senders of floor and engine"
    )
    bench.add_argument(
        "--algorithms",
        type=_algorithms,
        default=DEFAULT_ALGORITHMS,
        help=f"comma-separated, from {','.join(ALGORITHMS)} "
        f"(default {','.join(DEFAULT_ALGORITHMS)})",
    )
    bench.add_argument("--repeat", type=positive_int, default=3, help="runs per algorithm")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    _scenario_options(bench, gone=0.05, gateway=True)
    bench.set_defaults(run=_cmd_compare)

    modes = bench.add_subparsers(dest="mode", parser_class=OneLineParser, metavar="MODE")
    scaling = modes.add_parser(
        "scaling",
        help="the engine over N connections x C senders",
        description="For each N, seed N connections once, then broadcast with the engine at "
        "each concurrency C, each run in a fresh process: deliveries/s, CPU per delivery and "
        "peak RSS per run, and how peak RSS grows between the two largest N.",
    )
    scaling.add_argument("--sizes", type=positive_ints, default=(1_000, 10_000, 100_000))
    scaling.add_argument("--concurrency", type=positive_ints, default=(8, 32, 128, 512))
    scaling.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    scaling.add_argument("--plot", metavar="FILE.png", help="draw throughput against C and N")
    _scenario_options(scaling, gone=0.0, gateway=False)
    scaling.set_defaults(run=_cmd_scaling)

    distributed = modes.add_parser(
        "distributed",
        help='one "all" job split into S segments run by S concurrent workers',
        description="For each S, run one broadcast to N connections as S parallel-scan "
        "segments, each in its own worker process with its own sender pool, all started "
        "together; reports the wall time from the first start to the last finish.",
    )
    distributed.add_argument("--connections", type=positive_int, default=20_000)
    distributed.add_argument("--segments", type=positive_ints, default=(1, 2, 4, 8))
    distributed.add_argument(
        "--concurrency", type=positive_int, default=32, help="senders per worker (default 32)"
    )
    distributed.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    distributed.add_argument("--plot", metavar="FILE.png", help="draw wall time against S")
    _scenario_options(distributed, gone=0.0, gateway=False)
    distributed.set_defaults(run=_cmd_distributed)

    _add_quota(modes)
    e2e = modes.add_parser(
        "e2e",
        help="end-to-end latency of broadcast and sendMessage on the local stack",
        description="Connect N real WebSocket clients to the local stack, each as a user with a "
        "JWT; one sends a broadcast, then sendMessage to one user at a time: p50 / p99 / max "
        "from the sender's frame to each arrival (reported, not gated; exit 1 on a missed or "
        "duplicated message).",
    )
    e2e.add_argument("--clients", type=positive_int, default=1000)
    e2e.add_argument(
        "--messages", type=positive_int, default=100, help="sendMessage to one user (default 100)"
    )
    e2e.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    e2e.set_defaults(run=_cmd_e2e)

    jobs = modes.add_parser(
        "jobs",
        help='one large "all" job carried across short worker invocations',
        description="Seed N connections, enqueue one broadcast job, and let W concurrent "
        "workers with a few seconds per invocation carry it through segments and "
        "continuations; reports continuations, duplicates and misses.",
    )
    jobs.add_argument("--connections", type=positive_int, default=50_000)
    jobs.add_argument("--segments", type=positive_int, default=4)
    jobs.add_argument("--workers", type=positive_int, default=4)
    jobs.add_argument("--worker-seconds", type=non_negative, default=3.0)
    jobs.add_argument("--concurrency", type=positive_int, default=64)
    jobs.add_argument("--gone-rate", type=rate, default=0.05)
    jobs.add_argument("--latency", type=non_negative, default=0.0)
    jobs.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    jobs.set_defaults(run=_cmd_jobs)
    _coldstart_command(modes)


def _coldstart_command(modes: Any) -> None:
    coldstart = modes.add_parser(
        "coldstart",
        help="what importing each Lambda entrypoint costs in a fresh interpreter",
        description="Import each Lambda entrypoint under python -X importtime in N fresh "
        "interpreters (interleaved) and report the median and quartiles of the total, its wall "
        "and CPU time, the top modules by cumulative time and the top packages by self time. "
        "With --invoke, also time init plus the first and a warm invocation of each with real "
        "events against moto server. With --artifact, also import each from a Lambda artifact "
        "(wsfanout package's), unpacked read-only, in a Python 3.12, with and without its "
        "bytecode.",
    )
    coldstart.add_argument(
        "--entrypoints",
        type=_entrypoints,
        default=tuple(ENTRYPOINTS),
        help=f"comma-separated, from {','.join(ENTRYPOINTS)} (default all)",
    )
    coldstart.add_argument("--runs", type=positive_int, default=7, help="interpreters each")
    coldstart.add_argument("--top", type=positive_int, default=12, help="modules listed")
    coldstart.add_argument(
        "--invoke", action="store_true", help="also init + first invocation against moto"
    )
    coldstart.add_argument(
        "--bytecode",
        choices=("cached", "none"),
        default="cached",
        help="every module from bytecode (default: an artifact shipped with .pyc) or compiled "
        "from source (none: a Lambda artifact without .pyc)",
    )
    coldstart.add_argument(
        "--artifact",
        nargs="?",
        const="",
        default=None,
        metavar="ZIP",
        help="also import each entrypoint from a Lambda artifact (default: build one with "
        "wsfanout package for this machine) with its bytecode and without, in Python 3.12",
    )
    coldstart.add_argument(
        "--python", metavar="PYTHON", help="the Python 3.12 of --artifact (default: as package)"
    )
    coldstart.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    coldstart.set_defaults(run=_cmd_coldstart)


def _entrypoints(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    unknown = [name for name in names if name not in ENTRYPOINTS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown entrypoint {unknown[0]!r}; choose from {', '.join(ENTRYPOINTS)}"
        )
    return tuple(dict.fromkeys(names))


def _pacings(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    unknown = [name for name in names if name not in PACINGS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown pacing {unknown[0]!r}; choose from {', '.join(PACINGS)}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a pacing is listed twice: {text}")
    return names


def _add_quota(modes: Any) -> None:
    quota = modes.add_parser(
        "quota",
        help='one "all" job by S workers under an account-level request quota',
        description="Measure the local endpoint's rate with no quota (the largest S), then give "
        "it an account token bucket of rate R (--share of that rate, or --account-rate) and "
        "burst B, and run one broadcast to N connections as S segments on S worker processes "
        "for each S and each pacing: delivered rate / R, share of requests answered 429, "
        "missed and duplicated deliveries.",
    )
    quota.add_argument("--connections", type=positive_int, default=20_000)
    quota.add_argument("--segments", type=positive_ints, default=(1, 2, 4))
    quota.add_argument(
        "--concurrency", type=positive_int, default=32, help="senders per worker (default 32)"
    )
    quota.add_argument(
        "--latency", type=non_negative, default=0.02, help="seconds per request (default 0.02)"
    )
    quota.add_argument(
        "--share", type=rate, default=0.65, help="R as a share of the unthrottled rate"
    )
    quota.add_argument(
        "--account-rate", type=positive_float, help="R in requests/s (skips the unthrottled run)"
    )
    quota.add_argument(
        "--burst-seconds", type=non_negative, default=0.1, help="B as seconds of R (default 0.1)"
    )
    quota.add_argument(
        "--pacing",
        type=_pacings,
        default=("aimd", "learnt"),
        help="comma-separated pacings to compare (default aimd,learnt)",
    )
    quota.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    quota.set_defaults(run=_cmd_quota)


def _cmd_quota(args: argparse.Namespace) -> int:
    from .quota import QuotaOptions, run_quota  # noqa: PLC0415

    return run_quota(
        QuotaOptions(
            connections=args.connections,
            segments=args.segments,
            concurrency=args.concurrency,
            latency_s=args.latency,
            share=args.share,
            account_rate=args.account_rate,
            burst_s=args.burst_seconds,
            pacings=args.pacing,
            json_path=args.json,
        )
    )


def _cmd_e2e(args: argparse.Namespace) -> int:
    from .e2e import E2eOptions, run_e2e  # noqa: PLC0415

    return run_e2e(E2eOptions(clients=args.clients, messages=args.messages, json_path=args.json))


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import CompareOptions, run_compare  # noqa: PLC0415

    return run_compare(
        CompareOptions(
            connections=args.connections,
            concurrency=args.concurrency,
            algorithms=args.algorithms,
            repeat=args.repeat,
            scenario=_scenario(args),
            json_path=args.json,
        )
    )


def _cmd_scaling(args: argparse.Namespace) -> int:
    from .sweeps import ScalingOptions, run_scaling  # noqa: PLC0415

    scenario = _scenario(args)
    return run_scaling(
        ScalingOptions(
            sizes=args.sizes,
            concurrencies=args.concurrency,
            scenario=scenario,
            json_path=args.json,
            plot_path=_plot_checked(args),
        )
    )


def _cmd_distributed(args: argparse.Namespace) -> int:
    from .sweeps import DistributedOptions, run_distributed  # noqa: PLC0415

    scenario = _scenario(args)
    return run_distributed(
        DistributedOptions(
            connections=args.connections,
            segments=args.segments,
            concurrency=args.concurrency,
            scenario=scenario,
            json_path=args.json,
            plot_path=_plot_checked(args),
        )
    )


def _cmd_jobs(args: argparse.Namespace) -> int:
    from .jobs import JobsOptions, run_jobs  # noqa: PLC0415

    if args.worker_seconds <= 0.5:
        raise InvalidInputError("--worker-seconds must be above the 0.5 s hand-over margin")
    return run_jobs(
        JobsOptions(
            connections=args.connections,
            segments=args.segments,
            workers=args.workers,
            worker_seconds=args.worker_seconds,
            concurrency=args.concurrency,
            gone_rate=args.gone_rate,
            latency_s=args.latency,
            json_path=args.json,
        )
    )


def _cmd_coldstart(args: argparse.Namespace) -> int:
    from .coldstart import ColdstartOptions, run_coldstart  # noqa: PLC0415

    return run_coldstart(
        ColdstartOptions(
            entrypoints=args.entrypoints,
            runs=args.runs,
            top=args.top,
            invoke=args.invoke,
            bytecode=args.bytecode,
            json_path=args.json,
            artifact=args.artifact,
            python=args.python,
        )
    )
