"""What every ``wsfanout bench`` measurement shares: the services, the tables, the runs, the checks.

moto server (the registry) and the management endpoint (latency and faults injected) each run in
a process of their own, and each algorithm run is a third process (:mod:`.child`), so the figures
of one never include the CPU or memory of another. After each run the endpoint's records and the
registry say what really happened: who got the frame, who got it twice, which gone connections
are still registered.

With ``Scenario(tls=True)`` the endpoint serves HTTPS, as every ``@connections`` endpoint on AWS
does, with a certificate made for the run (:mod:`wsfanout.local.tls`); every client of it trusts
that certificate explicitly, through ``Services.ca_bundle`` and ``Spec.ca_bundle``.
"""

from __future__ import annotations

import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import IO, Any

import aiohttp
import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from ..aws.registry import Registry
from ..aws.table import table_definition
from ..exceptions import ConfigurationError, InvalidInputError
from ..local.management import Faults
from ..local.processes import endpoint_process, moto_server
from ..local.signatures import signed_headers
from ..local.tls import throwaway_certificate
from . import NO_REGISTRY
from .algorithms import Spec
from .seeding import classic_item, connection_ids, seed_items

__all__ = [
    "Bench",
    "Measured",
    "Run",
    "Scenario",
    "Services",
    "bench_ids",
    "control_session",
    "median_run",
    "services",
]

STAGE = "bench"
ID_PREFIX = "b"
_RUN_TIMEOUT_S = 3600.0  # one run of the slowest algorithm on 100k connections stays far below
_READY_TIMEOUT_S = 60.0


def bench_ids(count: int) -> list[str]:
    """The connection ids every bench table holds (the floor regenerates them from the count)."""
    return connection_ids(count, ID_PREFIX)


@dataclass(frozen=True, slots=True)
class Scenario:
    """The conditions of a measurement: the endpoint's behaviour and which endpoint it is."""

    latency_s: float = 0.020
    jitter_s: float = 0.0
    gone_rate: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    seed: int = 1
    gateway: str = "local"  # "local": the wsfanout endpoint; "moto": moto's own management API
    tls: bool = False  # the local endpoint serves HTTPS, as API Gateway does

    def __post_init__(self) -> None:
        if self.gateway not in ("local", "moto"):
            raise InvalidInputError(f"gateway must be 'local' or 'moto', not {self.gateway!r}")
        if self.gateway == "moto" and self.tls:
            raise InvalidInputError("moto's management API serves plain HTTP: --tls needs local")
        faulty = self.latency_s or self.jitter_s or self.gone_rate or self.throttle_rate
        if self.gateway == "moto" and (faulty or self.error_rate):
            raise InvalidInputError(
                "moto's management API has no latency or fault injection: use --latency 0 and "
                "no fault rates with --gateway moto"
            )
        Faults(  # validates the rates together (their sum, their range)
            gone_rate=self.gone_rate, throttle_rate=self.throttle_rate, error_rate=self.error_rate
        )

    def endpoint_args(self) -> list[str]:
        return [
            "--stage",
            STAGE,
            "--no-payloads",
            *("--latency", str(self.latency_s), "--jitter", str(self.jitter_s)),
            *("--gone-rate", str(self.gone_rate), "--throttle-rate", str(self.throttle_rate)),
            *("--error-rate", str(self.error_rate), "--seed", str(self.seed)),
        ]

    def gone(self, ids: Sequence[str]) -> set[str]:
        """The ids the endpoint will answer 410 for (a property of the id, so predictable)."""
        faults = Faults(gone_rate=self.gone_rate, seed=self.seed)
        return {cid for cid in ids if faults.is_gone(cid)}


@dataclass(frozen=True, slots=True)
class Services:
    """Where the separate processes listen."""

    moto_url: str
    management_url: str  # what the algorithms post to: {base}/{stage}, or moto itself
    control_url: str | None  # the local endpoint's /_wsfanout records; None for moto
    ca_bundle: str | None = None  # the endpoint's certificate (PEM) when it serves HTTPS

    def tls(self) -> ssl.SSLContext | None:
        """A client context trusting the endpoint's certificate only; ``None`` for plain HTTP."""
        return None if self.ca_bundle is None else ssl.create_default_context(cafile=self.ca_bundle)


@contextmanager
def services(scenario: Scenario) -> Iterator[Services]:
    """Start moto server and (for the local gateway) the management endpoint; stop both after.

    With ``scenario.tls`` the endpoint serves HTTPS with a certificate made for this call and
    deleted after it.
    """
    with moto_server() as moto_url:
        if scenario.gateway == "moto":
            yield Services(moto_url, moto_url, None)
            return
        if not scenario.tls:
            with endpoint_process(scenario.endpoint_args()) as base_url:
                yield Services(moto_url, f"{base_url}/{STAGE}", base_url)
            return
        with throwaway_certificate() as certificate:
            files = [
                "--tls-cert",
                str(certificate.cert_file),
                "--tls-key",
                str(certificate.key_file),
            ]
            with endpoint_process([*scenario.endpoint_args(), *files]) as base_url:
                yield Services(
                    moto_url, f"{base_url}/{STAGE}", base_url, str(certificate.cert_file)
                )


def control_session(where: Services) -> aiohttp.ClientSession:
    """An HTTP session for the endpoint's control routes (trusting its certificate, if any)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=where.tls() or True))


@dataclass(slots=True)
class Run:
    """One run of one algorithm: the child's own figures and the checked outcome."""

    name: str
    connections: int
    concurrency: int
    elapsed_s: float
    cpu_s: float
    peak_rss_mb: float
    delivered: int
    requests: int | None  # POSTs the endpoint answered; None when it cannot count (moto)
    missed: int | None  # None: not checkable (moto's management API keeps no records)
    duplicated: int | None
    gone_removed: int | None
    gone_left: int | None  # None: the algorithm does not clean up (NO_REGISTRY)
    live_removed: int | None
    outcome: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Deliveries per second."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        """Process CPU microseconds per delivery."""
        return self.cpu_s / self.delivered * 1e6 if self.delivered else float("inf")

    @property
    def correct(self) -> bool:
        """Nothing missed, duplicated, left behind or wrongly removed (unknowns do not count)."""
        return not any((self.missed, self.duplicated, self.gone_left, self.live_removed))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"rate": self.rate, "cpu_us": self.cpu_us, "correct": self.correct}


@dataclass(slots=True)
class Measured:
    """A child's report."""

    elapsed_s: float
    cpu_s: float
    peak_rss_mb: float
    start: float
    end: float
    outcome: dict[str, int]


def median_run(runs: Sequence[Run]) -> Run:
    """One row for repeated runs: median rate and CPU, worst memory and correctness figures.

    The machine is shared and noisy, so a single run can be slow for reasons of its own; the
    median of interleaved runs is what is compared.
    """
    if len(runs) == 1:
        return runs[0]

    def worst(name: str) -> int | None:
        values = [getattr(r, name) for r in runs]
        return None if any(v is None for v in values) else max(values)

    elapsed = statistics.median(r.elapsed_s for r in runs)
    delivered = round(statistics.median(r.delivered for r in runs))
    cpu_us = statistics.median(r.cpu_us for r in runs)
    requests = [r.requests for r in runs if r.requests is not None]
    return replace(
        runs[0],
        elapsed_s=elapsed,
        cpu_s=cpu_us * delivered / 1e6,
        delivered=delivered,
        peak_rss_mb=max(r.peak_rss_mb for r in runs),
        requests=round(statistics.median(requests)) if requests else None,
        missed=worst("missed"),
        duplicated=worst("duplicated"),
        gone_left=worst("gone_left"),
        live_removed=worst("live_removed"),
        gone_removed=worst("gone_removed"),
    )


Advance = Callable[[int], None]


class Bench:
    """Seeds tables, runs children against the services and checks each run."""

    def __init__(
        self,
        scenario: Scenario,
        where: Services,
        dynamodb: Any,
        http: aiohttp.ClientSession,
    ) -> None:
        self.scenario = scenario
        self.where = where
        self._dynamodb = dynamodb
        self._http = http

    # -- tables ----------------------------------------------------------------------------------

    async def create_table(self, prefix: str, ids: Sequence[str]) -> str:
        """A new registry table holding ``ids`` as classic ``$connect`` items."""
        name = f"{prefix}-{time.time_ns()}"
        await self._dynamodb.create_table(**table_definition(name))
        await seed_items(self._dynamodb, name, (classic_item(cid) for cid in ids), concurrency=8)
        return name

    async def drop_table(self, name: str) -> None:
        await self._dynamodb.delete_table(TableName=name)

    async def registered(self, table: str) -> set[str]:
        return await Registry(self._dynamodb, table).connection_ids()

    async def restore(self, table: str, ids: Sequence[str], left: set[str]) -> None:
        """Register again what a run removed, so the next run starts from the same table."""
        missing = [cid for cid in ids if cid not in left]
        if missing:
            await seed_items(self._dynamodb, table, (classic_item(cid) for cid in missing))

    # -- the endpoint's records ------------------------------------------------------------------

    async def _control(self, method: str, path: str) -> Any:
        if self.where.control_url is None:
            return None
        url = f"{self.where.control_url}/_wsfanout/{path}"
        async with self._http.request(method, url, headers=signed_headers(method, url)) as answer:
            answer.raise_for_status()
            return await answer.json(content_type=None)

    async def stats(self) -> dict[str, Any] | None:
        """The endpoint's POST counters since the last reset, and ``first_post_at`` and
        ``last_answer_at`` (``None``: moto keeps none)."""
        stats: dict[str, Any] | None = await self._control("GET", "stats")
        return stats

    async def posts(self) -> int | None:
        stats = await self.stats()
        return None if stats is None else int(stats["posts"])

    # -- runs ------------------------------------------------------------------------------------

    def spec(self, algorithm: str, table: str, ids_count: int, **extra: Any) -> Spec:
        return Spec(
            algorithm=algorithm,
            moto_url=self.where.moto_url,
            table=table,
            management_url=self.where.management_url,
            connections=ids_count,
            id_prefix=ID_PREFIX,
            ca_bundle=self.where.ca_bundle,
            **extra,
        )

    def segment_specs(self, table: str, ids_count: int, count: int, **extra: Any) -> list[Spec]:
        """The engine's specs for one "all" job in ``count`` parallel-scan segments, one worker
        each (a single unsegmented worker for ``count`` = 1)."""
        if count == 1:
            return [self.spec("engine", table, ids_count, **extra)]
        return [
            self.spec("engine", table, ids_count, segment=i, total_segments=count, **extra)
            for i in range(count)
        ]

    async def run_together(self, specs: Sequence[Spec], advance: Advance | None) -> list[Measured]:
        """Start one child per spec, let them all go at once, wait for every one to finish.

        While they run, the endpoint's POST counter drives ``advance`` (the progress bar).
        """
        done = anyio.Event()
        results: list[Measured] = []
        try:
            async with anyio.create_task_group() as tasks:
                if advance is not None:
                    tasks.start_soon(self._follow, advance, done)
                try:
                    results = await _run_children(specs)
                finally:
                    done.set()
        except BaseExceptionGroup as group:  # one failing child: its own error, not a group
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
                raise group.exceptions[0] from None
            raise
        return results

    async def _follow(self, advance: Advance, done: anyio.Event) -> None:
        seen = 0
        while not done.is_set():
            with anyio.move_on_after(0.25):
                await done.wait()
            posts = await self.posts()
            if posts is not None and posts > seen:
                advance(posts - seen)
                seen = posts

    async def measure(
        self,
        name: str,
        specs: Sequence[Spec],
        *,
        table: str,
        ids: Sequence[str],
        advance: Advance | None = None,
        check_registry: bool = True,
        companions: Sequence[Spec] = (),
    ) -> Run:
        """Run ``specs`` together (one child each) against a fresh endpoint record and check.

        ``companions`` run beside them and are not measured (the floor's registry reader).
        With ``check_registry`` the registry is scanned afterwards and what the run removed is
        registered again, so repeated runs start from the same table.
        """
        await self._control("POST", "reset")
        measured = (await self.run_together([*specs, *companions], advance))[: len(specs)]
        posts = await self.posts()
        counts: dict[str, int] | None = await self._control("GET", "counts")
        gone = self.scenario.gone(ids)
        live_count = len(ids) - len(gone)
        outcome: dict[str, int] = {}
        for child in measured:
            for key, value in child.outcome.items():
                outcome[key] = outcome.get(key, 0) + value
        if counts is None:  # moto's management API: only the algorithm's own account
            delivered, missed, duplicated = outcome.get("sent", 0), None, None
        else:
            delivered = sum(1 for cid in ids if counts.get(cid) and cid not in gone)
            missed = live_count - delivered
            duplicated = sum(n - 1 for n in counts.values() if n > 1)
        gone_removed = gone_left = live_removed = None
        if check_registry:
            left = await self.registered(table)
            live_removed = sum(1 for cid in ids if cid not in left and cid not in gone)
            if specs[0].algorithm not in NO_REGISTRY:  # those do not clean up
                gone_removed = len(gone - left)
                gone_left = len(gone & left)
            await self.restore(table, ids, left)
        start = min(m.start for m in measured)
        return Run(
            name=name,
            connections=len(ids),
            concurrency=specs[0].concurrency,
            elapsed_s=max(m.end for m in measured) - start,
            cpu_s=sum(m.cpu_s for m in measured),
            peak_rss_mb=max(m.peak_rss_mb for m in measured),
            delivered=delivered,
            requests=posts,
            missed=missed,
            duplicated=duplicated,
            gone_removed=gone_removed,
            gone_left=gone_left,
            live_removed=live_removed,
            outcome=outcome,
        )


async def _run_children(specs: Sequence[Spec]) -> list[Measured]:
    children: list[_Child] = []
    try:
        for spec in specs:
            # one by one: each started child is closed even if a later start fails
            children.append(await _Child.start(spec))  # noqa: PERF401
        with anyio.fail_after(_READY_TIMEOUT_S):
            for child in children:
                await child.expect_ready()
        for child in children:
            await child.go()
        with anyio.fail_after(_RUN_TIMEOUT_S):
            return [await child.result() for child in children]
    finally:
        with anyio.CancelScope(shield=True):
            for child in children:
                await child.close()


class _Child:
    """A child process running one spec; its stderr goes to a file, read only if it fails."""

    def __init__(self, process: Process, errors: IO[bytes]) -> None:
        self._process = process
        assert process.stdout is not None  # noqa: S101  (PIPE was requested)
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self._errors = errors

    @classmethod
    async def start(cls, spec: Spec) -> _Child:
        errors = tempfile.TemporaryFile()  # noqa: SIM115  (closed in close())
        process = await anyio.open_process(
            [sys.executable, "-m", "wsfanout.bench.child", json.dumps(asdict(spec))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        return cls(process, errors)

    async def _line(self) -> str:
        try:
            return (await self._stdout.receive_until(b"\n", 1 << 20)).decode()
        except (anyio.EndOfStream, anyio.IncompleteRead):
            with anyio.move_on_after(10):
                await self._process.wait()
            self._errors.seek(0)
            lines = self._errors.read().decode(errors="replace").strip().splitlines()
            raise ConfigurationError(
                f"a benchmark run failed: {lines[-1] if lines else 'no output'}"
            ) from None

    async def expect_ready(self) -> None:
        line = await self._line()
        if line != "READY":
            raise ConfigurationError(f"a benchmark run did not start: {line[:200]}")

    async def go(self) -> None:
        assert self._process.stdin is not None  # noqa: S101  (PIPE was requested)
        await self._process.stdin.send(b"GO\n")

    async def result(self) -> Measured:
        return Measured(**json.loads(await self._line()))

    async def close(self) -> None:
        if self._process.returncode is None:
            with anyio.move_on_after(2):  # it exits right after its result; not on a failure
                await self._process.wait()
        if self._process.returncode is None:
            self._process.kill()
            with anyio.move_on_after(10):
                await self._process.wait()
        await self._process.aclose()
        self._errors.close()
