"""A local API Gateway management endpoint (the ``@connections`` API) on aiohttp.

Tests and benchmarks need an endpoint that answers exactly like API Gateway's management API, so
that a real botocore/aiobotocore client can be the client under test: same routes (with and
without the stage prefix), same status codes, the ``x-amzn-ErrorType`` header botocore maps errors
by, and JSON bodies botocore parses, SigV4 verified against the local account (403 as API
Gateway answers each kind of bad signature), 400 ``BadRequestException`` for an id API Gateway
could not have issued, and an optional account-level throttle (429). On top of that it injects
faults reproducibly (latency, gone connections, throttling, server errors, dropped TCP
connections), all derived from one seed, and records what every connection received so a test
can assert exactly-once delivery. Its control routes (``/_wsfanout/stats``, ``counts``,
``reset``, ``config``) need the same signature (:func:`wsfanout.local.signatures.signed_headers`).

The connection bookkeeping sits behind :class:`ConnectionStore`, and delivery behind an optional
:data:`Deliver` hook, so the WebSocket emulator (:mod:`wsfanout.local.emulator`) plugs in its real
sockets without touching the HTTP side.

Run it in-process with :func:`serve`, or as a subprocess for benchmarks::

    python -m wsfanout.local.management --port 0 --stage prod --latency 0.02 --seed 1 \
        --account-rate 10000 --account-burst 5000

which prints one line ``READY http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT. With
``--tls-cert FILE --tls-key FILE`` (:mod:`wsfanout.local.tls` makes a throwaway pair) it serves
HTTPS only, as API Gateway does, and prints ``READY https://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol

from aiohttp import web

from ..aws.endpoints import STAGE_NAME
from ..cli.arguments import OneLineParser, add_throttle_arguments, non_negative, port, rate
from ..core.models import MAX_PAYLOAD_BYTES
from ..exceptions import ConfigurationError, InvalidInputError
from .serving import serve_app
from .signatures import Refusal, Verifier

__all__ = [
    "CONNECTION_ID",
    "DEFAULT_USER_AGENT",
    "STAT_KEYS",
    "AccountThrottle",
    "Backpressure",
    "ConnectionInfo",
    "ConnectionStore",
    "Deliver",
    "Faults",
    "ManagementEndpoint",
    "MemoryConnections",
    "main",
    "serve",
    "throttle_of",
    "tls_of",
]

DEFAULT_USER_AGENT: Final = "wsfanout-local"
"""``Identity.UserAgent`` reported for connections nobody described."""

STAT_KEYS: Final = (
    "posts",
    "delivered",
    "gone",
    "throttled",
    "errors",
    "dropped",
    "forbidden",
    "too_large",
    "bad_request",
    "account_throttled",
)
"""Counters of POST outcomes; ``posts`` is always the sum of all the others. ``throttled`` counts
the injected throttle faults, ``account_throttled`` the refusals of :class:`AccountThrottle`."""

CONNECTION_ID: Final = re.compile(r"[A-Za-z0-9_-]{15}=")
"""API Gateway's connection ids: 16 characters, base64 of 11 bytes (one ``=`` of padding) in the
URL-safe alphabet. API Gateway answers any other id with 400 ``BadRequestException``
("Invalid connectionId: ..."), and only a well-formed id it does not know with 410."""

_HASH_SPACE: Final = float(1 << 64)


def _error(status: int, error_type: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    # Built once at import: the hot path only wraps these in a Response.
    body = json.dumps({"message": message}).encode()
    return status, body, {"x-amzn-ErrorType": error_type, "Content-Type": "application/json"}


_GONE: Final = _error(410, "GoneException", "Connection is gone")
# botocore's model declares no BadRequestException for these operations; botocore still raises a
# ClientError coded by the x-amzn-ErrorType header, which is what API Gateway sends.
_BAD_ID_TYPE: Final = "BadRequestException"
_THROTTLED: Final = _error(429, "LimitExceededException", "Rate exceeded")
_INTERNAL: Final = _error(500, "InternalServerErrorException", "Internal server error")
_FORBIDDEN: Final = _error(
    403, "ForbiddenException", "The security token included in the request is invalid"
)
_NO_ROUTE: Final = _error(403, "ForbiddenException", "Forbidden")
_TOO_LARGE: Final = _error(
    413, "PayloadTooLargeException", f"Message too long; the limit is {MAX_PAYLOAD_BYTES} bytes"
)


def _bad_id(connection_id: str) -> tuple[int, bytes, dict[str, str]]:
    return _error(400, _BAD_ID_TYPE, f"Invalid connectionId: {connection_id}")


def _refusal(refusal: Refusal) -> tuple[int, bytes, dict[str, str]]:
    return _error(403, refusal.error_type, refusal.message)


def _respond(error: tuple[int, bytes, dict[str, str]]) -> web.Response:
    status, body, headers = error
    return web.Response(status=status, body=body, headers=headers)


def _iso8601(moment: datetime) -> str:
    """API Gateway's timestamp format: UTC, milliseconds, ``Z`` suffix."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"{name} must be between 0 and 1, got {value}")


@dataclass(frozen=True, slots=True)
class Faults:
    """Reproducible misbehaviour of the endpoint; everything random derives from ``seed``.

    ``gone_rate`` is a property of the connection id, not of the request (a gone connection stays
    gone), so :meth:`is_gone` is a pure function tests can use to predict the gone set. Throttle,
    error and drop are per-request draws from one ``random.Random(seed)`` and partition the unit
    interval, hence their sum must not exceed 1; they apply to POST only, and gone wins over them.
    """

    latency_s: float = 0.0
    jitter_s: float = 0.0
    gone_ids: frozenset[str] = field(default_factory=frozenset)
    gone_rate: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.latency_s < 0 or self.jitter_s < 0:
            raise InvalidInputError("latency_s and jitter_s must not be negative")
        for name in ("gone_rate", "throttle_rate", "error_rate", "drop_rate"):
            _check_rate(name, getattr(self, name))
        if self.throttle_rate + self.error_rate + self.drop_rate > 1.0:
            raise InvalidInputError("throttle_rate + error_rate + drop_rate must not exceed 1")
        if not isinstance(self.gone_ids, frozenset):
            # Accept any iterable from callers but keep the field hashable and immutable.
            object.__setattr__(self, "gone_ids", frozenset(self.gone_ids))

    def is_gone(self, connection_id: str) -> bool:
        """Whether the faults make ``connection_id`` gone: listed, or its seeded hash is below
        ``gone_rate``. Stable across processes and runs (no use of Python's salted ``hash``)."""
        if connection_id in self.gone_ids:
            return True
        if self.gone_rate <= 0.0:
            return False
        digest = hashlib.blake2b(f"{self.seed}\x00{connection_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self.gone_rate * _HASH_SPACE


class AccountThrottle:
    """API Gateway's account-level request throttle: one token bucket for every request to the
    endpoint's ``@connections`` routes, whichever connection it names.

    ``rate`` tokens per second refill a bucket of ``burst`` (AWS's quota is a steady rate plus a
    burst, "Amazon API Gateway quotas"); a request that finds it empty is answered 429
    ``LimitExceededException``, as the management API's model documents for "more than the
    allowed number of requests per unit of time". Off unless an endpoint is given one.

    :raises InvalidInputError: ``rate`` is not positive or ``burst`` is below 1.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0.0:  # also refuses NaN
            raise InvalidInputError(f"the account rate must be positive, got {rate}")
        if burst < 1:
            raise InvalidInputError(f"the account burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        """Spend one token if there is one; ``False`` means the request is throttled."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What ``GetConnection`` reports about one connection."""

    connected_at: datetime
    source_ip: str = "127.0.0.1"
    user_agent: str = DEFAULT_USER_AGENT
    last_active_at: datetime | None = None
    """Last message *from the client*; ``None`` means it never sent one (so: ``connected_at``)."""


class ConnectionStore(Protocol):
    """Which connections exist: the seam where the WebSocket emulator plugs in real sockets."""

    def is_live(self, connection_id: str) -> bool:
        """Whether a frame posted to ``connection_id`` would be delivered."""
        ...

    def add(self, connection_id: str, info: ConnectionInfo | None = None) -> None:
        """Make ``connection_id`` live (again)."""
        ...

    def remove(self, connection_id: str) -> bool:
        """Make ``connection_id`` gone; return whether it was live."""
        ...

    def info(self, connection_id: str) -> ConnectionInfo | None:
        """Describe a live connection, or ``None`` when it is not live."""
        ...


Deliver = Callable[[str, bytes], Awaitable[bool]]
"""Pushes a POSTed payload to a live connection; ``False`` means it turned out gone (410), and
:class:`Backpressure` that its buffer is full (429). Either way the payload is never delivered."""


class Backpressure(Exception):  # noqa: N818  (an outcome of a POST, named as API Gateway's)
    """Raised by a :data:`Deliver` hook when the connection's outgoing buffer is full: the POST
    answers 429 ``LimitExceededException`` at once, and the frame is dropped, not delayed."""


class MemoryConnections:
    """The in-memory :class:`ConnectionStore`.

    In *open* mode (``live=None``) every id is live until removed, so a benchmark can post to the
    100k ids it seeded in DynamoDB without telling the endpoint about them; only removed ids and
    explicitly added ones cost memory. With ``live`` given, exactly those ids are live.
    """

    def __init__(self, live: Iterable[str] | None = None) -> None:
        self._live: set[str] | None = None if live is None else set(live)
        self._removed: set[str] = set()
        self._info: dict[str, ConnectionInfo] = {}
        self._default = ConnectionInfo(connected_at=datetime.now(UTC))

    @property
    def open(self) -> bool:
        """Whether unknown ids count as live."""
        return self._live is None

    def is_live(self, connection_id: str) -> bool:
        """See :meth:`ConnectionStore.is_live`."""
        if self._live is None:
            return connection_id not in self._removed
        return connection_id in self._live

    def add(self, connection_id: str, info: ConnectionInfo | None = None) -> None:
        """See :meth:`ConnectionStore.add`; ``connected_at`` defaults to now."""
        if self._live is None:
            self._removed.discard(connection_id)
        else:
            self._live.add(connection_id)
        self._info[connection_id] = info or ConnectionInfo(connected_at=datetime.now(UTC))

    def remove(self, connection_id: str) -> bool:
        """See :meth:`ConnectionStore.remove`."""
        was_live = self.is_live(connection_id)
        if self._live is None:
            self._removed.add(connection_id)
        else:
            self._live.discard(connection_id)
        self._info.pop(connection_id, None)
        return was_live

    def info(self, connection_id: str) -> ConnectionInfo | None:
        """See :meth:`ConnectionStore.info`; unknown live ids share the store's creation time."""
        if not self.is_live(connection_id):
            return None
        return self._info.get(connection_id, self._default)


class ManagementEndpoint:
    """The ``@connections`` API with fault injection and delivery records.

    ``stage=None`` accepts any stage prefix; a given stage makes other stages answer 403 as API
    Gateway does for unknown paths. Every request, the control routes' too, must be signed
    (SigV4) with the stack's credentials, checked by ``verifier`` (default: the made-up account
    of :mod:`wsfanout.aws.account`), and is refused with 403 as API Gateway refuses it (see
    :mod:`wsfanout.local.signatures`); ``verify_signatures=False`` accepts anything, for callers
    that cannot sign (a plain ``urllib`` probe). ``forbid_all`` refuses every request,
    simulating wrong credentials, and may be flipped while serving. ``throttle`` is the
    account-level throttle (none by default), also assignable while serving.

    A connection id that API Gateway could never have issued gets 400 ``BadRequestException``
    (410 would make the engine delete registry entries that were never gone). ``any_id`` says
    whether every id is well-formed: by default it is for the in-memory store, whose ids tests
    and benchmarks make up, and it is not (:data:`CONNECTION_ID` decides) for any other store.

    ``keep_payloads=False`` keeps counts only, for 100k-connection benchmarks. ``deliver``, when
    given, is awaited for every POST that passed the checks and faults; a frame counts as
    delivered only when it returns ``True``. ``config`` holds more knobs for
    ``GET /_wsfanout/config`` to report (the local stack adds the emulator's limits there).
    """

    def __init__(
        self,
        *,
        live: Iterable[str] | None = None,
        faults: Faults | None = None,
        stage: str | None = None,
        keep_payloads: bool = True,
        verify_signatures: bool = True,
        verifier: Verifier | None = None,
        forbid_all: bool = False,
        store: ConnectionStore | None = None,
        deliver: Deliver | None = None,
        throttle: AccountThrottle | None = None,
        any_id: bool | None = None,
    ) -> None:
        if store is not None and live is not None:
            raise ConfigurationError("give either 'live' or 'store', not both")
        if stage is not None and not STAGE_NAME.fullmatch(stage):
            raise InvalidInputError(f"invalid stage name {stage!r}")
        self.store: ConnectionStore = store if store is not None else MemoryConnections(live)
        self.stage = stage
        self.keep_payloads = keep_payloads
        self.verifier = (verifier or Verifier()) if verify_signatures else None
        self.forbid_all = forbid_all
        self.throttle = throttle
        self.any_id = store is None if any_id is None else any_id
        self.config: dict[str, float | int | None] = {}
        self._deliver = deliver
        self._counts: dict[str, int] = {}
        self._payloads: dict[str, list[bytes]] = {}
        self._stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._first_post_at: float | None = None
        self._last_answer_at = 0.0
        self.faults = faults or Faults()

    # -- configuration ---------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The active faults; assigning new ones also re-seeds the per-request random draws."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self._rng = random.Random(faults.seed)
        # A separate stream for jitter, so turning jitter on does not change which requests fail.
        self._jitter_rng = random.Random(f"jitter-{faults.seed}")
        self._throttle_below = faults.throttle_rate
        self._error_below = faults.throttle_rate + faults.error_rate
        self._drop_below = self._error_below + faults.drop_rate
        self._post_faults = self._drop_below > 0.0
        self._delays = faults.latency_s > 0.0 or faults.jitter_s > 0.0

    # -- connection membership -------------------------------------------------------------------

    def add(self, connection_id: str, info: ConnectionInfo | None = None) -> None:
        """Make a connection live (in open mode: undo a delete)."""
        self.store.add(connection_id, info)

    def remove(self, connection_id: str) -> bool:
        """Make a connection gone, as if its client disconnected; return whether it was live."""
        return self.store.remove(connection_id)

    def is_live(self, connection_id: str) -> bool:
        """Whether a POST to the id would be delivered (fault-gone ids are never live)."""
        return not self._faults.is_gone(connection_id) and self.store.is_live(connection_id)

    # -- records ---------------------------------------------------------------------------------

    def received(self, connection_id: str) -> list[bytes]:
        """The frames delivered to a connection, in arrival order."""
        if not self.keep_payloads:
            raise ConfigurationError("this endpoint keeps counts only (keep_payloads=False)")
        return list(self._payloads.get(connection_id, ()))

    def counts(self) -> dict[str, int]:
        """Frames delivered per connection id (ids that received nothing are absent)."""
        return dict(self._counts)

    def duplicates(self) -> dict[str, int]:
        """Connection ids that received more than one frame, with their counts."""
        return {cid: n for cid, n in self._counts.items() if n > 1}

    def stats(self) -> dict[str, int]:
        """POST outcome counters, keyed by :data:`STAT_KEYS`."""
        return dict(self._stats)

    def post_span(self) -> tuple[float, float] | None:
        """When (``time.time()``) the first POST since the last reset arrived and the last one
        was answered; ``None`` before any. The span the account's quota was in use: a rate over
        it leaves out what came before the first request (a sender reading its registry)."""
        if self._first_post_at is None:
            return None
        return self._first_post_at, self._last_answer_at

    def reset(self) -> None:
        """Forget deliveries and counters and re-seed the draws; membership is kept, so a
        benchmark can warm up, reset, and measure a run that is reproducible on its own."""
        self._counts.clear()
        self._payloads.clear()
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._first_post_at = None
        self.faults = self._faults

    # -- HTTP ------------------------------------------------------------------------------------

    def make_app(self, routes: Sequence[web.RouteDef] = ()) -> web.Application:
        """A fresh aiohttp application bound to this endpoint (an application runs only once).

        ``routes`` (the emulator's page and handshake) are added before the catch-all 403: aiohttp
        tries the routes indexed under one path prefix in order, so a later ``/`` would never
        match."""
        # Read bodies a little above the limit ourselves so that oversize frames get API
        # Gateway's 413, not aiohttp's own; far larger ones are caught in _post.
        app = web.Application(client_max_size=2 * MAX_PAYLOAD_BYTES)
        # Staged paths first: clients are configured with https://{domain}/{stage}, and aiohttp
        # tries dynamic routes in order.
        prefixes = ["/{stage}" if self.stage is None else f"/{self.stage}", ""]
        for prefix in prefixes:
            path = prefix + "/@connections/{connection_id:[^/]+}"
            app.router.add_post(path, self._post)
            app.router.add_get(path, self._get, allow_head=False)
            app.router.add_delete(path, self._delete)
        app.router.add_get("/_wsfanout/stats", self._control_stats, allow_head=False)
        app.router.add_get("/_wsfanout/counts", self._control_counts, allow_head=False)
        app.router.add_post("/_wsfanout/reset", self._control_reset)
        app.router.add_get("/_wsfanout/config", self._control_config, allow_head=False)
        app.router.add_routes(routes)
        # Anything else is what API Gateway answers for an unknown path or stage: 403.
        app.router.add_route("*", "/{tail:.*}", self._no_route)
        return app

    async def _delay(self) -> None:
        faults = self._faults
        delay = faults.latency_s
        if faults.jitter_s > 0.0:
            delay += self._jitter_rng.uniform(0.0, faults.jitter_s)
        await asyncio.sleep(delay)

    async def _refused(self, request: web.Request) -> tuple[int, bytes, dict[str, str]] | None:
        """403 unless the request is signed with the endpoint's credentials (or not checked)."""
        if self.forbid_all:
            return _FORBIDDEN
        if self.verifier is None:
            return None
        try:
            body = await request.read()  # aiohttp keeps it: the handler's read() costs nothing
        except web.HTTPRequestEntityTooLarge:
            return _TOO_LARGE  # unverifiable, and 413 whoever sent it
        refusal = self.verifier.verify(request.method, request.raw_path, request.headers, body)
        return None if refusal is None else _refusal(refusal)

    async def _admit(
        self, request: web.Request
    ) -> tuple[str, tuple[int, bytes, dict[str, str]]] | None:
        """The checks every ``@connections`` request passes, in API Gateway's order (who is
        asking, how often, about what): ``None``, or the stat key and answer of a refusal."""
        refused = await self._refused(request)
        if refused is not None:
            return "too_large" if refused is _TOO_LARGE else "forbidden", refused
        if self.throttle is not None and not self.throttle.take():
            return "account_throttled", _THROTTLED
        connection_id = request.match_info["connection_id"]
        if not self.any_id and not CONNECTION_ID.fullmatch(connection_id):
            return "bad_request", _bad_id(connection_id)
        return None

    async def _post(self, request: web.Request) -> web.StreamResponse:
        if self._first_post_at is None:
            self._first_post_at = time.time()
        try:
            return await self._answer_post(request)
        finally:
            self._last_answer_at = time.time()

    async def _answer_post(self, request: web.Request) -> web.StreamResponse:
        # The hot path: no logging, no models, precomputed error answers.
        stats = self._stats
        stats["posts"] += 1
        if self._delays:
            await self._delay()
        refused = await self._admit(request)
        if refused is not None:
            stats[refused[0]] += 1
            return _respond(refused[1])
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            data = None
        if data is None or len(data) > MAX_PAYLOAD_BYTES:
            stats["too_large"] += 1
            return _respond(_TOO_LARGE)
        connection_id = request.match_info["connection_id"]
        if not self.is_live(connection_id):
            stats["gone"] += 1
            return _respond(_GONE)
        if self._post_faults:
            draw = self._rng.random()
            if draw < self._throttle_below:
                stats["throttled"] += 1
                return _respond(_THROTTLED)
            if draw < self._error_below:
                stats["errors"] += 1
                return _respond(_INTERNAL)
            if draw < self._drop_below:
                stats["dropped"] += 1
                transport = request.transport
                if transport is not None:
                    transport.close()
                # aiohttp fails to write this to the closed transport and sends nothing.
                return web.Response()
        refusal = await self._hand_over(connection_id, data)
        if refusal is not None:
            return refusal
        stats["delivered"] += 1
        counts = self._counts
        counts[connection_id] = counts.get(connection_id, 0) + 1
        if self.keep_payloads:
            self._payloads.setdefault(connection_id, []).append(data)
        return web.Response()

    async def _hand_over(self, connection_id: str, data: bytes) -> web.Response | None:
        """Give a frame to the :data:`Deliver` hook; the error answer when it did not take it."""
        if self._deliver is None:
            return None
        try:
            delivered = await self._deliver(connection_id, data)
        except Backpressure:
            self._stats["throttled"] += 1
            return _respond(_THROTTLED)
        if not delivered:
            self._stats["gone"] += 1
            return _respond(_GONE)
        return None

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if self._delays:
            await self._delay()
        refused = await self._admit(request)
        if refused is not None:
            return _respond(refused[1])
        connection_id = request.match_info["connection_id"]
        info = self.store.info(connection_id)
        if info is None or self._faults.is_gone(connection_id):
            return _respond(_GONE)
        # botocore's model names these members connectedAt/identity/lastActiveAt on the wire
        # (locationName); capitalised keys would parse to an empty response.
        body = {
            "connectedAt": _iso8601(info.connected_at),
            "identity": {"sourceIp": info.source_ip, "userAgent": info.user_agent},
            "lastActiveAt": _iso8601(info.last_active_at or info.connected_at),
        }
        return web.json_response(body)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        if self._delays:
            await self._delay()
        refused = await self._admit(request)
        if refused is not None:
            return _respond(refused[1])
        connection_id = request.match_info["connection_id"]
        if not self.is_live(connection_id):
            return _respond(_GONE)
        self.store.remove(connection_id)
        return web.Response(status=204)

    async def _no_route(self, _request: web.Request) -> web.StreamResponse:
        return _respond(_NO_ROUTE)

    async def _control_stats(self, request: web.Request) -> web.StreamResponse:
        refused = await self._refused(request)
        if refused is not None:
            return _respond(refused)
        body: dict[str, float | None] = dict(self.stats())
        body["unique"] = len(self._counts)
        body["duplicates"] = sum(1 for n in self._counts.values() if n > 1)
        body["first_post_at"], body["last_answer_at"] = self.post_span() or (None, None)
        return web.json_response(body)

    async def _control_counts(self, request: web.Request) -> web.StreamResponse:
        refused = await self._refused(request)
        if refused is not None:
            return _respond(refused)
        return web.json_response(self._counts)

    async def _control_reset(self, request: web.Request) -> web.StreamResponse:
        refused = await self._refused(request)
        if refused is not None:
            return _respond(refused)
        self.reset()
        return web.Response(status=204)

    async def _control_config(self, request: web.Request) -> web.StreamResponse:
        """The knobs a conformance run needs to know about (a real stage has no such route)."""
        refused = await self._refused(request)
        if refused is not None:
            return _respond(refused)
        throttle = self.throttle
        body = {
            "account_rate": None if throttle is None else throttle.rate,
            "account_burst": None if throttle is None else throttle.burst,
            **self.config,
        }
        return web.json_response(body)


@asynccontextmanager
async def serve(
    endpoint: ManagementEndpoint,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 2.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """Serve ``endpoint`` and yield its base URL (``http://127.0.0.1:PORT``, no stage; with an
    ``ssl_context``, ``https://`` and TLS only).

    ``port=0`` picks a free port (see :func:`~wsfanout.local.serving.serve_app`). The backlog is
    deep because a benchmark opens its whole sender pool at once.
    """
    app = endpoint.make_app()
    async with serve_app(
        app,
        host,
        port,
        shutdown_timeout=shutdown_timeout,
        backlog=4096,
        ssl_context=ssl_context,
    ) as url:
        yield url


# -- command line ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m wsfanout.local.management",
        description="Serve a local API Gateway management endpoint (the @connections API).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=0, help="port; 0 picks a free one")
    parser.add_argument("--stage", default=None, help="accept only this stage (default: any)")
    parser.add_argument("--latency", type=non_negative, default=0.0, help="seconds per request")
    parser.add_argument("--jitter", type=non_negative, default=0.0, help="extra 0..J seconds")
    parser.add_argument("--gone-rate", type=rate, default=0.0, help="fraction of ids gone")
    parser.add_argument("--throttle-rate", type=rate, default=0.0, help="fraction of POSTs 429")
    parser.add_argument("--error-rate", type=rate, default=0.0, help="fraction of POSTs 500")
    parser.add_argument("--drop-rate", type=rate, default=0.0, help="fraction of POSTs dropped")
    parser.add_argument("--seed", type=int, default=0, help="seed of every fault decision")
    parser.add_argument(
        "--no-payloads", action="store_true", help="keep delivery counts only, not the frames"
    )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept requests that are not signed with the local account's credentials",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    parser.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    add_throttle_arguments(parser)
    return parser


def tls_of(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server context ``--tls-cert``/``--tls-key`` ask for, or ``None`` (plain HTTP).

    :raises InvalidInputError: only one of the two is given, or they cannot be loaded.
    """
    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise InvalidInputError("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInputError(f"cannot load the TLS certificate and key: {exc}") from None
    return context


def throttle_of(args: argparse.Namespace) -> AccountThrottle | None:
    """The throttle ``--account-rate``/``--account-burst`` ask for, or ``None``.

    :raises InvalidInputError: ``--account-burst`` without ``--account-rate``.
    """
    if args.account_rate is None:
        if args.account_burst is not None:
            raise InvalidInputError("--account-burst needs --account-rate")
        return None
    burst = args.account_burst or max(1, int(args.account_rate))
    return AccountThrottle(args.account_rate, burst)


async def _serve_until_signalled(
    endpoint: ManagementEndpoint, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with serve(endpoint, host, port, ssl_context=ssl_context) as url:
            sys.stdout.write(f"READY {url}\n")
            sys.stdout.flush()
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: serve until SIGTERM/SIGINT after printing ``READY <url>``."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        faults = Faults(
            latency_s=args.latency,
            jitter_s=args.jitter,
            gone_rate=args.gone_rate,
            throttle_rate=args.throttle_rate,
            error_rate=args.error_rate,
            drop_rate=args.drop_rate,
            seed=args.seed,
        )
        endpoint = ManagementEndpoint(
            faults=faults,
            stage=args.stage,
            keep_payloads=not args.no_payloads,
            verify_signatures=not args.allow_unsigned,
            throttle=throttle_of(args),
        )
        tls = tls_of(args)
    except InvalidInputError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve_until_signalled(endpoint, args.host, args.port, tls))
    except OSError as exc:  # the port is taken, the host is not ours ...
        sys.stderr.write(f"{parser.prog}: error: cannot serve: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        raise SystemExit(main())
