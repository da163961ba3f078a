"""The engine end to end: moto server (registry) + the local management endpoint (gateway); and
deterministic runs on the in-memory doubles of :mod:`wsfanout.testing` (at the end)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from tests.aws.throttling import Throttled
from tests.helpers import registered_ids
from wsfanout.aws.gateway import ManagementGateway
from wsfanout.aws.lean import LeanGateway
from wsfanout.aws.raw import RawGateway
from wsfanout.aws.registry import Registry
from wsfanout.bench.seeding import classic_item, connection_ids, seed_items
from wsfanout.core import models
from wsfanout.core.fanout import Fanout, RunHooks
from wsfanout.core.interfaces import Gateway, Recipient
from wsfanout.core.models import AllTarget, ConnectionsTarget, Cursor, RoomTarget
from wsfanout.core.outcomes import Outcome
from wsfanout.core.pacing import RetryPolicy
from wsfanout.exceptions import (
    ForbiddenError,
    MidRunRegistryError,
    PayloadTooLargeError,
    RegistryError,
)
from wsfanout.local.management import Faults
from wsfanout.testing import MemorySource, ScriptedGateway, set_testing

NOW = datetime(2026, 11, 26, tzinfo=UTC)
FAST_RETRY = RetryPolicy(max_attempts=10, base_s=0.001, max_s=0.01)


@pytest.fixture(params=["lean", "raw", "botocore"])
async def gateway(request, session, endpoint) -> AsyncIterator[Gateway]:
    """Every engine test runs over every transport: aiohttp's, raw asyncio's and aiobotocore."""
    _, url = endpoint
    transports: dict[str, type[LeanGateway] | type[RawGateway] | type[ManagementGateway]] = {
        "lean": LeanGateway,
        "raw": RawGateway,
        "botocore": ManagementGateway,
    }
    transport = transports[request.param]
    async with transport(session, default_endpoint=url, pool_size=64) as gw:
        yield gw


async def seed(registry: Registry, dynamodb, count: int, prefix: str = "c") -> list[str]:
    ids = connection_ids(count, prefix)
    await seed_items(dynamodb, registry.table_name, [classic_item(i) for i in ids])
    return ids


def engine(registry: Registry, gateway: Gateway, **kwargs) -> Fanout:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("concurrency", 32)
    return Fanout(registry, gateway, **kwargs)


async def test_all_target_delivers_exactly_once(registry, dynamodb, gateway, endpoint) -> None:
    fake, _ = endpoint
    ids = await seed(registry, dynamodb, 500)
    report = await engine(registry, gateway).run(AllTarget(all=True), b"hello")
    assert report.delivered == 500
    assert report.complete
    assert report.resume is None
    assert fake.counts() == dict.fromkeys(ids, 1)
    assert fake.received(ids[7]) == [b"hello"]


async def test_room_user_and_list_targets(registry, dynamodb, gateway, endpoint) -> None:
    fake, _ = endpoint
    for cid, user in (("a=", "u1"), ("b=", "u1"), ("c=", "u2"), ("d=", "u3")):
        await registry.put(models.Connection(connection_id=cid, connected_at=NOW, user_id=user))
    await registry.join_room("a=", "lobby")
    await registry.join_room("d=", "lobby")
    fanout = engine(registry, gateway)

    report = await fanout.run(RoomTarget(room="lobby"), b"room")
    assert report.delivered == 2
    assert fake.counts() == {"a=": 1, "d=": 1}

    fake.reset()
    report = await fanout.run(models.UsersTarget(user_ids=["u1", "u3"]), b"users")
    assert fake.counts() == {"a=": 1, "b=": 1, "d=": 1}

    fake.reset()
    report = await fanout.run(ConnectionsTarget(connection_ids=["c=", "x="]), b"list")
    assert fake.counts() == {"c=": 1, "x=": 1}
    assert report.delivered == 2


async def test_exclude_is_honoured(registry, dynamodb, gateway, endpoint) -> None:
    fake, _ = endpoint
    ids = await seed(registry, dynamodb, 50)
    report = await engine(registry, gateway).run(AllTarget(all=True), b"x", exclude=ids[:5])
    assert report.excluded == 5
    assert report.delivered == 45
    assert set(fake.counts()) == set(ids[5:])


async def test_gone_connections_are_cleaned_up(registry, dynamodb, gateway, endpoint) -> None:
    fake, _ = endpoint
    fake.faults = Faults(gone_rate=0.1, seed=3)
    ids = await seed(registry, dynamodb, 400)
    for cid in ids[:20]:
        await registry.join_room(cid, "lobby")
    gone = {cid for cid in ids if fake.faults.is_gone(cid)}
    assert 20 < len(gone) < 70

    report = await engine(registry, gateway).run(AllTarget(all=True), b"x")
    assert report.gone == len(gone)
    assert report.cleaned_up == len(gone)
    assert report.delivered == 400 - len(gone)
    assert await registered_ids(registry) == set(ids) - gone
    assert set(fake.counts()) == set(ids) - gone

    # Their memberships are not looked up mid-broadcast: the next room broadcast meets them
    # as 410s and removes them then.
    gone_members = set(ids[:20]) & gone
    assert gone_members, "seed 3 makes some room members gone"
    report = await engine(registry, gateway).run(RoomTarget(room="lobby"), b"room")
    assert report.gone == len(gone_members)
    assert report.delivered == 20 - len(gone_members)
    members = {r.connection_id async for p in registry.pages(RoomTarget(room="lobby")) for r in p}
    assert members == set(ids[:20]) - gone


async def test_a_throttled_registry_still_delivers_to_everyone_once(
    dynamodb, table_name, gateway, endpoint
) -> None:
    """Every Scan page and every clean-up batch is throttled twice before DynamoDB takes it."""
    fake, _ = endpoint
    fake.faults = Faults(gone_rate=0.1, seed=5)
    ids = connection_ids(300)
    await seed_items(dynamodb, table_name, [classic_item(i) for i in ids])
    gone = {cid for cid in ids if fake.faults.is_gone(cid)}
    assert 10 < len(gone) < 60
    throttled = Throttled(dynamodb, burst=2)
    registry = Registry(throttled, table_name, page_size=50)  # type: ignore[arg-type]

    with set_testing():
        report = await engine(registry, gateway).run(AllTarget(all=True), b"x")
    assert (report.delivered, report.gone, report.failed) == (300 - len(gone), len(gone), 0)
    assert (report.cleaned_up, report.cleanup_failed) == (len(gone), 0)
    assert report.complete
    assert fake.counts() == dict.fromkeys(set(ids) - gone, 1)
    assert throttled.passed["Scan"] == 300 // 50
    assert throttled.passed["BatchWriteItem"] >= 1
    assert throttled.refused == {op: 2 * n for op, n in throttled.passed.items()}
    assert await registered_ids(Registry(dynamodb, table_name)) == set(ids) - gone


class CountingRegistry(Registry):
    """The real registry, counting the delete calls the engine makes."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry._client, registry.table_name)
        self.deletes: list[int] = []

    async def remove_gone(self, recipients: Sequence[Recipient]) -> int:
        self.deletes.append(len(recipients))
        return await super().remove_gone(recipients)


async def test_gone_ids_are_deleted_in_batches_not_one_call_each(
    registry, dynamodb, gateway, endpoint
) -> None:
    fake, _ = endpoint
    fake.faults = Faults(gone_rate=0.2, latency_s=0.002, seed=5)
    ids = await seed(registry, dynamodb, 600)
    gone = {cid for cid in ids if fake.faults.is_gone(cid)}
    counting = CountingRegistry(registry)

    report = await engine(counting, gateway, cleanup_linger_s=0.2).run(AllTarget(all=True), b"x")
    assert report.cleaned_up == len(gone)
    assert sum(counting.deletes) == len(gone)
    assert len(counting.deletes) < len(gone) / 2, counting.deletes
    assert await registered_ids(registry) == set(ids) - gone

    # The end of the run does not wait out a linger: the last batch goes as the senders finish.
    await seed_items(dynamodb, registry.table_name, [classic_item(cid) for cid in gone])
    started = time.monotonic()
    report = await engine(counting, gateway, cleanup_linger_s=60.0).run(AllTarget(all=True), b"y")
    assert time.monotonic() - started < 30
    assert report.cleaned_up == len(gone)
    assert await registered_ids(registry) == set(ids) - gone


@pytest.mark.parametrize(
    ("faults", "counter"),
    [
        pytest.param({"throttle_rate": 0.3, "seed": 5}, "throttled", id="throttling-storm"),
        pytest.param(
            {"error_rate": 0.15, "drop_rate": 0.1, "seed": 9}, "retries", id="errors-drops"
        ),
    ],
)
async def test_throttling_and_transient_errors_still_deliver_everything_once(
    registry, dynamodb, gateway, endpoint, faults: dict[str, Any], counter: str
) -> None:
    """429s are waited out, 5xx answers and dropped connections retried: each id gets one copy.

    ``faults`` are the endpoint's, built per run (their random draws are stateful); ``counter``
    is the report's count of what they caused, so a run that met none of them fails.
    """
    fake, _ = endpoint
    fake.faults = Faults(**faults)
    ids = await seed(registry, dynamodb, 300)
    report = await engine(registry, gateway).run(AllTarget(all=True), b"x")
    assert report.delivered == 300
    assert report.failed == 0
    assert getattr(report, counter) > 30
    assert fake.counts() == dict.fromkeys(ids, 1)


async def test_exhausted_retries_are_reported_by_reason(
    registry, dynamodb, gateway, endpoint
) -> None:
    fake, _ = endpoint
    fake.faults = Faults(error_rate=1.0)
    await seed(registry, dynamodb, 10)
    fanout = engine(registry, gateway, retry=RetryPolicy(max_attempts=3, base_s=0.001))
    report = await fanout.run(AllTarget(all=True), b"x")
    assert report.failed == 10
    assert report.failed_by_reason == {"server_error": 10}
    assert report.retries == 20
    assert fake.stats()["errors"] == 30


async def test_forbidden_aborts_fast(registry, dynamodb, gateway, endpoint) -> None:
    fake, _ = endpoint
    fake.forbid_all = True
    await seed(registry, dynamodb, 2000)
    with pytest.raises(ForbiddenError, match="403"):
        await engine(registry, gateway, concurrency=16).run(AllTarget(all=True), b"x")
    assert fake.stats()["forbidden"] <= 64, "abort after the first 403, not after every id"


async def test_oversize_payload_rejected_before_any_send(
    registry, dynamodb, gateway, endpoint
) -> None:
    fake, _ = endpoint
    await seed(registry, dynamodb, 10)
    with pytest.raises(PayloadTooLargeError):
        await engine(registry, gateway).run(AllTarget(all=True), b"x" * (128 * 1024 + 1))
    assert fake.stats()["posts"] == 0
    report = await engine(registry, gateway).run(AllTarget(all=True), b"x" * (128 * 1024))
    assert report.delivered == 10


async def test_deadline_in_the_past_attempts_nothing(registry, dynamodb, gateway, endpoint) -> None:
    fake, _ = endpoint
    await seed(registry, dynamodb, 20)
    start = Cursor(after={"PK": "CONN#c0000005AbCd=", "SK": "CONN"})
    report = await engine(registry, gateway).run(
        AllTarget(all=True), b"x", cursor=start, deadline=time.monotonic() - 1
    )
    assert not report.complete
    assert report.resume == start
    assert fake.stats()["posts"] == 0


@pytest.mark.parametrize(
    ("target_kind", "segments"), [("all", None), ("all", (1, 3)), ("room", None), ("list", None)]
)
async def test_deadline_and_resume_reach_everyone_exactly_once(
    registry, dynamodb, gateway, endpoint, target_kind, segments
) -> None:
    fake, _ = endpoint
    fake.faults = Faults(latency_s=0.004, gone_rate=0.05, seed=11)
    ids = await seed(registry, dynamodb, 600)
    target: models.Target
    if target_kind == "room":
        for cid in ids[:300]:
            await registry.join_room(cid, "lobby")
        target, expected = RoomTarget(room="lobby"), ids[:300]
    elif target_kind == "list":
        target, expected = ConnectionsTarget(connection_ids=ids[::2]), ids[::2]
    else:
        target, expected = AllTarget(all=True), ids
    segment, total = segments or (None, None)
    if segment is not None:
        expected = [
            r.connection_id
            async for page in registry.pages(target, segment=segment, total_segments=total)
            for r in page
        ]
    fanout = engine(registry, gateway, concurrency=8)
    cursor, runs, gone = None, 0, 0
    with anyio.fail_after(60):
        while True:
            runs += 1
            report = await fanout.run(
                target,
                b"x",
                cursor=cursor,
                segment=segment,
                total_segments=total,
                deadline=time.monotonic() + 0.15,
            )
            gone += report.gone
            if report.complete:
                break
            assert report.resume is not None
            cursor = report.resume
    assert runs >= 2, "the deadline must have cut at least one run short"
    expected_gone = {cid for cid in expected if fake.faults.is_gone(cid)}
    assert gone == len(expected_gone)
    assert fake.counts() == dict.fromkeys(set(expected) - expected_gone, 1)


async def test_retries_cut_by_the_deadline_resume_without_duplicates(
    registry, dynamodb, gateway, endpoint
) -> None:
    """Attempts waiting for a retry at the deadline are left for the next run; the ones that
    finished after them are skipped by it, so every connection gets exactly one delivery."""
    fake, _ = endpoint
    fake.faults = Faults(error_rate=0.3, latency_s=0.002, seed=17)
    ids = await seed(registry, dynamodb, 400)
    retry = RetryPolicy(max_attempts=30, base_s=0.02, max_s=0.05)
    fanout = engine(registry, gateway, concurrency=16, retry=retry)
    cursor, runs, skipped = None, 0, 0
    with anyio.fail_after(60):
        while True:
            runs += 1
            report = await fanout.run(
                AllTarget(all=True), b"x", cursor=cursor, deadline=time.monotonic() + 0.1
            )
            if report.complete:
                break
            assert report.resume is not None
            cursor = report.resume
            skipped += len(cursor.skip or [])
    assert runs >= 3
    assert skipped > 0, "some runs ended with retries in flight past finished sends"
    assert fake.counts() == dict.fromkeys(ids, 1)


# --- deterministic runs on the in-memory doubles ------------------------------------------------
#
# c2's send is held in flight until c5's answer, which waits for the deadline to pass first: so
# "the deadline passes while c2 is in flight, after c5 was taken" happens at exactly that point.
# The wait is for the engine's own condition (its clock past the deadline), not a guess at
# timing; the deadline is far enough ahead that c0..c5 are taken long before it.

DEADLINE_AHEAD_S = 0.5


IDS = [f"c{i}" for i in range(10)]


def key(connection_id: str) -> dict[str, str]:
    return {"PK": f"CONN#{connection_id}", "SK": "CONN"}


class HeldThenDeadline:
    """c2's first attempt is held in flight (answering ``held_answer`` when released); c5's
    attempt waits until the deadline has passed and releases c2. With two senders, c3..c5 finish
    while c2 is still in flight. Later attempts are delivered; deliveries are recorded."""

    def __init__(self, deadline: float, held_answer: Outcome) -> None:
        self.deadline, self.held_answer = deadline, held_answer
        self.release = anyio.Event()
        self.delivered: list[str] = []

    async def __call__(self, connection_id: str, data: bytes) -> Outcome:
        if connection_id == "c2" and not self.release.is_set():
            await self.release.wait()
            answer = self.held_answer
        else:
            if connection_id == "c5":
                await anyio.sleep(max(0.0, self.deadline - time.monotonic()) + 0.01)
                self.release.set()
            answer = Outcome.DELIVERED
        if answer is Outcome.DELIVERED:
            self.delivered.append(connection_id)
        return answer


async def held_run(held_answer: Outcome) -> tuple[Fanout, HeldThenDeadline, Any]:
    deadline = time.monotonic() + DEADLINE_AHEAD_S
    script = HeldThenDeadline(deadline, held_answer)
    fanout = Fanout(MemorySource(IDS, page_size=4), ScriptedGateway(script), concurrency=2)
    with set_testing(), anyio.fail_after(10):
        report = await fanout.run(AllTarget(all=True), b"x", deadline=deadline)
    return fanout, script, report


async def test_watermark_after_a_deadline_with_a_send_in_flight() -> None:
    """A send in flight at the deadline finishes; the resume cursor is after the last recipient
    taken, and the resumed run reaches exactly the rest."""
    fanout, script, report = await held_run(Outcome.DELIVERED)
    assert sorted(script.delivered) == IDS[:6]
    assert not report.complete
    assert report.resume == Cursor(after=key("c5"))
    with anyio.fail_after(10):
        rest = await fanout.run(AllTarget(all=True), b"x", cursor=report.resume)
    assert rest.complete
    assert rest.delivered == 4
    assert sorted(script.delivered) == sorted(IDS)
    assert len(script.delivered) == len(IDS), "nobody twice"


async def test_ids_finished_past_the_oldest_in_flight_are_skipped_on_resume() -> None:
    fanout, script, report = await held_run(Outcome.SERVER_ERROR)
    assert report.resume == Cursor(after=key("c1"), skip=["c3", "c4", "c5"])
    with anyio.fail_after(10):
        rest = await fanout.run(AllTarget(all=True), b"x", cursor=report.resume)
    assert rest.complete
    assert rest.delivered == 5  # c2 and c6..c9; the skipped ones are not attempted again
    assert isinstance(fanout.gateway, ScriptedGateway)
    assert fanout.gateway.counts()["c3"] == 1, "a skipped id is not posted to again"
    assert sorted(script.delivered) == sorted(IDS), "none missed"
    assert len(script.delivered) == len(IDS), "none twice"


async def test_a_retry_waiting_past_the_deadline_counts_as_not_attempted() -> None:
    fanout, script, report = await held_run(Outcome.SERVER_ERROR)
    assert "c2" not in script.delivered
    assert report.attempted == 5  # c0, c1, c3, c4, c5: c2 was abandoned, not failed
    assert (report.failed, report.retries) == (0, 0)
    assert report.resume is not None
    assert report.resume.after == key("c1"), "the cursor stays before the abandoned one"
    with anyio.fail_after(10):
        await fanout.run(AllTarget(all=True), b"x", cursor=report.resume)
    assert script.delivered.count("c2") == 1


async def test_forbidden_aborts_and_nothing_is_sent_after() -> None:
    ids = [f"f{i:02d}" for i in range(40)]
    posts_at_403: list[int] = []

    def answer(connection_id: str, data: bytes) -> Outcome:
        if connection_id == "f07":
            posts_at_403.append(len(scripted.posts))
            return Outcome.FORBIDDEN
        return Outcome.DELIVERED

    scripted = ScriptedGateway(answer, default_endpoint="https://wrong.example/prod")
    fanout = Fanout(MemorySource(ids, page_size=10), scripted, concurrency=4)
    with anyio.fail_after(10), pytest.raises(ForbiddenError, match="403") as raised:
        await fanout.run(AllTarget(all=True), b"x")
    assert raised.value.endpoint == "https://wrong.example/prod"
    assert len(posts_at_403) == 1, "the 403 is answered once"
    assert len(scripted.posts) == posts_at_403[0], "no post started after the 403"
    assert len(scripted.posts) < len(ids)


# --- RunHooks: progress and checkpoints --------------------------------------------------------


class LostClaimError(Exception):
    """Any exception type at all: the engine must not depend on it being one of ours."""


async def test_a_raising_checkpoint_aborts_the_run_and_is_reraised_unwrapped() -> None:
    ids = [f"k{i:03d}" for i in range(200)]
    scripted = ScriptedGateway()
    raised = LostClaimError("the step is no longer ours")
    marks: list[Cursor] = []

    async def checkpoint(cursor: Cursor, report: models.FanoutReport) -> None:
        marks.append(cursor)
        if len(marks) == 2:
            raise raised

    fanout = Fanout(MemorySource(ids, page_size=20), scripted, concurrency=4)
    hooks = RunHooks(checkpoint=checkpoint, checkpoint_every=20)
    with anyio.fail_after(10), pytest.raises(LostClaimError) as caught:
        await fanout.run(AllTarget(all=True), b"x", hooks=hooks)
    assert caught.value is raised, "the very exception, not a group or a wrapper"
    assert len(marks) == 2
    assert len(scripted.posts) < len(ids), "the senders stopped"


class HeldDeletes(MemorySource):
    """A source whose deletes of gone connections wait until ``release`` is set."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(ids, page_size=10)
        self.release = anyio.Event()
        self.deleted = False

    async def remove_gone(self, recipients: Sequence[Recipient]) -> int:
        await self.release.wait()
        removed = await super().remove_gone(recipients)
        self.deleted = True
        return removed


async def test_a_checkpoint_never_passes_a_gone_connection_whose_delete_is_pending() -> None:
    """A worker that crashed after such a checkpoint would leave the connection registered
    for good: its successor resumes past it (found by the fault suite's SIGKILL scenario)."""
    ids = [f"p{i:03d}" for i in range(200)]
    source = HeldDeletes(ids)
    marks: list[tuple[Cursor, bool]] = []

    async def checkpoint(cursor: Cursor, report: models.FanoutReport) -> None:
        marks.append((cursor, source.deleted))
        if len(marks) >= 3:
            source.release.set()

    gateway = ScriptedGateway(lambda cid, _: Outcome.GONE if cid == "p005" else Outcome.DELIVERED)
    fanout = Fanout(source, gateway, concurrency=4)
    with anyio.fail_after(10):
        report = await fanout.run(
            AllTarget(all=True), b"x", hooks=RunHooks(checkpoint=checkpoint, checkpoint_every=5)
        )
    assert report.complete
    assert (report.delivered, report.gone, report.cleaned_up) == (199, 1, 1)
    pending = [cursor for cursor, deleted in marks if not deleted]
    assert len(pending) >= 3, "checkpoints were taken while the delete waited"
    for cursor in pending:
        assert cursor.after is not None
        assert cursor.after["PK"] <= "CONN#p004", "the watermark stays before p005"
        assert "p005" not in (cursor.skip or [])
    assert "p005" not in source.ids()


async def test_checkpoints_carry_a_moving_watermark_and_progress_counts_attempts() -> None:
    ids = [f"p{i:03d}" for i in range(100)]
    marks: list[tuple[Cursor, int]] = []
    progressed: list[int] = []

    async def checkpoint(cursor: Cursor, report: models.FanoutReport) -> None:
        marks.append((cursor, report.delivered))

    fanout = Fanout(MemorySource(ids, page_size=10), ScriptedGateway(), concurrency=4)
    hooks = RunHooks(progress=progressed.append, checkpoint=checkpoint, checkpoint_every=10)
    with anyio.fail_after(10):
        report = await fanout.run(AllTarget(all=True), b"x", exclude=ids[:5], hooks=hooks)
    assert report.complete
    assert (report.delivered, report.excluded) == (95, 5)
    assert sum(progressed) == 95, "excluded recipients are not progress"
    assert marks, "a checkpoint every ten finished recipients"
    delivered = [count for _, count in marks]
    assert delivered == sorted(delivered)
    positions = [
        ids.index(cursor.after["PK"].removeprefix("CONN#")) for cursor, _ in marks if cursor.after
    ]
    assert positions == sorted(positions), "the watermark only moves forward"


# --- stopping early: the ``stop`` event and a registry failure mid-run -------------------------


def delivered_once(scripted: ScriptedGateway, ids: Sequence[str]) -> bool:
    """Every id was posted to exactly once, over all the runs that used ``scripted``."""
    return scripted.counts() == dict.fromkeys(ids, 1)


async def test_a_set_stop_event_returns_the_watermark_and_the_resume_reaches_the_rest() -> None:
    ids = [f"s{i:03d}" for i in range(300)]
    stop = anyio.Event()

    def answer(connection_id: str, data: bytes) -> Outcome:
        if len(scripted.posts) >= 40:
            stop.set()
        return Outcome.DELIVERED

    scripted = ScriptedGateway(answer)
    fanout = Fanout(MemorySource(ids, page_size=25), scripted, concurrency=8)
    with anyio.fail_after(10):
        first = await fanout.run(AllTarget(all=True), b"x", stop=stop)
    assert not first.complete
    assert first.resume is not None
    assert 40 <= first.delivered < 100, "the senders stopped taking soon after the stop"
    assert first.delivered == len(scripted.posts), "every send in flight finished"
    with anyio.fail_after(10):
        rest = await fanout.run(AllTarget(all=True), b"x", cursor=first.resume)
    assert rest.complete
    assert first.delivered + rest.delivered == len(ids)
    assert delivered_once(scripted, ids), "none twice, none missed"


async def test_a_stop_cuts_retries_and_the_abandoned_recipient_is_resumed() -> None:
    ids = [f"r{i}" for i in range(8)]
    stop = anyio.Event()

    def answer(connection_id: str, data: bytes) -> Outcome:
        if connection_id == "r2" and not stop.is_set():
            stop.set()
            return Outcome.SERVER_ERROR  # retryable: the stop must keep it from being retried
        return Outcome.DELIVERED

    scripted = ScriptedGateway(answer)
    fanout = Fanout(MemorySource(ids, page_size=4), scripted, concurrency=1, retry=FAST_RETRY)
    with anyio.fail_after(10):
        first = await fanout.run(AllTarget(all=True), b"x", stop=stop)
    assert (first.delivered, first.failed, first.retries) == (2, 0, 0)
    assert first.resume == Cursor(after=key("r1")), "the cursor stays before the abandoned one"
    with anyio.fail_after(10):
        rest = await fanout.run(AllTarget(all=True), b"x", cursor=first.resume)
    assert rest.complete
    assert rest.delivered == 6
    assert scripted.counts()["r2"] == 2, "one abandoned attempt, one in the resumed run"


async def test_a_stop_set_before_the_run_attempts_nothing() -> None:
    ids = [f"e{i}" for i in range(5)]
    stop = anyio.Event()
    stop.set()
    scripted = ScriptedGateway()
    fanout = Fanout(MemorySource(ids, page_size=2), scripted, concurrency=2)
    start = Cursor(after=key("e1"))
    with anyio.fail_after(10):
        report = await fanout.run(AllTarget(all=True), b"x", cursor=start, stop=stop)
    assert not report.complete
    assert (report.attempted, len(scripted.posts)) == (0, 0)
    assert report.resume == start, "resumed from where it was asked to start"


class FailingAfter(MemorySource):
    """A source whose page reads fail (as DynamoDB throttling past its retries would) once
    ``pages_ok`` pages of a run have been yielded."""

    def __init__(self, ids: Sequence[str], *, page_size: int, pages_ok: int) -> None:
        super().__init__(ids, page_size=page_size)
        self.pages_ok = pages_ok

    async def pages(self, target: models.Target, **kwargs: Any) -> AsyncIterator[Sequence[Any]]:
        served = 0
        async for page in super().pages(target, **kwargs):
            if served == self.pages_ok:
                raise RegistryError("DynamoDB Scan failed: ProvisionedThroughputExceeded")
            served += 1
            yield page


async def test_a_registry_failure_mid_run_sends_what_was_fetched_and_carries_the_watermark() -> (
    None
):
    ids = [f"g{i:03d}" for i in range(100)]
    scripted = ScriptedGateway()
    fanout = Fanout(FailingAfter(ids, page_size=10, pages_ok=3), scripted, concurrency=4)
    with anyio.fail_after(10), pytest.raises(MidRunRegistryError, match="Scan failed") as caught:
        await fanout.run(AllTarget(all=True), b"x")
    assert isinstance(caught.value, RegistryError), "callers catching RegistryError still do"
    assert isinstance(caught.value.__cause__, RegistryError)
    partial = caught.value.report
    assert not partial.complete
    assert partial.delivered == 30, "the three pages fetched were all sent"
    assert partial.resume == Cursor(after=key("g029"))
    healed = Fanout(MemorySource(ids, page_size=10), scripted, concurrency=4)
    with anyio.fail_after(10):
        rest = await healed.run(AllTarget(all=True), b"x", cursor=partial.resume)
    assert rest.complete
    assert rest.delivered == 70
    assert delivered_once(scripted, ids), "none twice, none missed"
