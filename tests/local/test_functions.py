"""Lambda functions as processes: real worker processes running tiny handler modules written
into ``tmp_path`` (no mocks), and the real route handler behind the emulator against moto.

Process ids come from the handlers themselves (``os.getpid()`` in the worker), so "warm",
"cold", "at most N processes" and "no process left" are measured, not inferred.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

from wsfanout.aws.account import CREDENTIALS, REGION
from wsfanout.aws.events import LambdaContext
from wsfanout.exceptions import (
    ConfigurationError,
    InvalidInputError,
    InvocationError,
    InvocationTimeoutError,
)
from wsfanout.local.emulator import Emulator, serve_emulator
from wsfanout.local.functions import ProcessFunction
from wsfanout.local.poller import SqsPoller

pytestmark = pytest.mark.timeout(60)

WAIT_S = 10.0

# What Lambda puts in every sandbox's environment (and the interpreter's own locale
# coercion, LC_CTYPE, where en_US.UTF-8 is not installed).
LAMBDA_VARIABLES = {
    "PATH",
    "PYTHONPATH",
    "LANG",
    "TZ",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
}

COUNTER = """
    import os, time
    calls = 0
    def handler(event, context):
        global calls
        calls += 1
        time.sleep(event.get("sleep", 0))
        if event.get("exit") is not None:
            os._exit(event["exit"])
        if event.get("signal"):
            os.kill(os.getpid(), event["signal"])
        return {"calls": calls, "pid": os.getpid()}
"""

ENVIRONMENT = """
    import os
    def handler(event, context):
        return dict(os.environ)
"""


def module(directory: Path, name: str, source: str) -> Path:
    """Write the handler module ``name`` into ``directory``."""
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return directory


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer exists (reaped: not even a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def zombie(pid: int) -> bool:
    """Whether ``pid`` has died and waits to be reaped (Linux's /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in {"Z", "X"}


def poll(condition: Any, what: str) -> None:
    """Poll ``condition`` until true, at most WAIT_S."""
    give_up = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"{what} did not happen within {WAIT_S}s")
        time.sleep(0.01)  # polling a condition with a bound


@pytest.fixture
def function(tmp_path: Path) -> Iterator[Any]:
    """A factory of ProcessFunctions over ``tmp_path``'s modules, all closed at the end."""
    made: list[ProcessFunction] = []

    def make(handler: str = "counter.handler", **kwargs: Any) -> ProcessFunction:
        kwargs.setdefault("code_dir", tmp_path)
        kwargs.setdefault("environment", {})
        kwargs.setdefault("timeout_s", WAIT_S)
        made.append(ProcessFunction(kwargs.pop("name", "fn"), handler, **kwargs))
        return made[-1]

    module(tmp_path, "counter", COUNTER)
    yield make
    for each in made:
        each.close()


# -- warm and cold ------------------------------------------------------------------------------


def test_a_warm_worker_keeps_its_module_state(function: Any, caplog) -> None:
    caplog.set_level(logging.INFO, logger="wsfanout.local.functions")
    fn = function()
    answers = [fn({}, None) for _ in range(3)]
    assert [a["calls"] for a in answers] == [1, 2, 3]
    assert len({a["pid"] for a in answers}) == 1
    assert fn.pids == {answers[0]["pid"]}
    reports = [r.getMessage() for r in caplog.records if "REPORT RequestId" in r.getMessage()]
    assert len(reports) == 3
    init = re.search(r"Init Duration: ([\d.]+) ms", reports[0])
    assert init is not None, reports[0]  # the cold start, measured from spawn to import done
    assert float(init.group(1)) > 0
    assert all("Init Duration" not in r for r in reports[1:])
    assert all(r.startswith("[fn] REPORT") and "Memory Size: 128 MB" in r for r in reports)


def test_the_context_is_lambdas(function: Any, tmp_path: Path) -> None:
    module(
        tmp_path,
        "context",
        """
        def handler(event, context):
            return {
                "name": context.function_name,
                "memory": context.memory_limit_in_mb,
                "request": context.aws_request_id,
                "arn": context.invoked_function_arn,
                "stream": context.log_stream_name,
                "group": context.log_group_name,
                "remaining": context.get_remaining_time_in_millis(),
            }
        """,
    )
    fn = function("context.handler", name="chat-route", memory_mb=256, timeout_s=30)
    caller = LambdaContext(5, function_name="what-the-emulator-calls-it")
    first, second = fn({}, caller), fn({}, None)
    assert first["name"] == "chat-route"
    assert first["memory"] == "256"
    assert first["request"] == caller.aws_request_id  # the caller's id, in both processes' logs
    assert first["arn"].endswith(":function:chat-route")
    assert first["group"] == "/aws/lambda/chat-route"
    assert first["stream"] == second["stream"]  # one log stream per container
    assert 0 < first["remaining"] <= 5000  # the caller's context had less than the timeout
    assert 5000 < second["remaining"] <= 30000
    assert second["request"] != first["request"]


# -- isolation ----------------------------------------------------------------------------------


def test_each_function_sees_only_its_own_environment(
    function: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSFANOUT_PARENT_MARKER", "from the developer's shell")
    module(tmp_path, "environment", ENVIRONMENT)
    one = function("environment.handler", name="one", environment={"ONLY_ONE": "1", **CREDENTIALS})
    two = function("environment.handler", name="two", environment={"ONLY_TWO": "2"})
    seen_one, seen_two = one({}, None), two({}, None)

    assert set(seen_one) - {"LC_CTYPE"} == LAMBDA_VARIABLES | {"ONLY_ONE", *CREDENTIALS}
    assert set(seen_two) - {"LC_CTYPE"} == LAMBDA_VARIABLES | {"ONLY_TWO"}
    # The parent's own AWS_* (the test session sets dummy credentials) stay in the parent.
    assert os.environ["AWS_ACCESS_KEY_ID"]
    assert "AWS_ACCESS_KEY_ID" not in seen_two
    assert seen_one["AWS_LAMBDA_FUNCTION_NAME"] == "one"
    assert seen_two["_HANDLER"] == "environment.handler"
    assert seen_one["LAMBDA_TASK_ROOT"] == str(tmp_path.resolve())
    assert seen_one["AWS_REGION"] == REGION
    assert seen_one["AWS_CONFIG_FILE"] == os.devnull
    assert seen_one["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path.resolve())


def test_functions_do_not_share_module_state(function: Any) -> None:
    one, two = function(name="one"), function(name="two")
    assert [one({}, None)["calls"] for _ in range(3)] == [1, 2, 3]
    assert two({}, None)["calls"] == 1


def test_without_a_code_dir_the_task_root_is_a_scratch_directory(function: Any) -> None:
    fn = function("tests.local.lambda_handlers.task_root", code_dir=None)
    seen = fn({}, None)
    root = Path(seen["root"])
    assert seen["cwd"] == seen["root"]
    assert root.is_dir()
    assert not any(root.iterdir())
    fn.close()
    assert not root.exists()


# -- concurrency --------------------------------------------------------------------------------


def test_parallel_calls_use_at_most_concurrency_processes(function: Any) -> None:
    fn = function(concurrency=2)
    callers = 6
    start = threading.Barrier(callers)

    def call(_n: int) -> dict[str, Any]:
        start.wait(WAIT_S)
        return dict(fn({"sleep": 0.3}, None))

    with ThreadPoolExecutor(callers) as pool:
        answers = list(pool.map(call, range(callers)))
    pids = {a["pid"] for a in answers}
    # Two callers find room for a process each, the others wait for one of them to be idle.
    assert len(pids) == 2
    assert sorted(a["calls"] for a in answers) == [1, 1, 2, 2, 3, 3]
    assert fn.pids == pids


def test_a_caller_that_stops_waiting_leaves_the_worker_to_finish(function: Any) -> None:
    fn = function()
    first = fn({}, None)
    with ThreadPoolExecutor(1) as pool:
        abandoned = pool.submit(fn, {"sleep": 0.5}, None)
        with pytest.raises(FutureTimeout):
            abandoned.result(timeout=0.05)  # the emulator's integration timeout, in miniature
        after = fn({}, None)  # waits for the one worker, then reuses it
        assert abandoned.result(WAIT_S)["calls"] == 2
    assert after == {"calls": 3, "pid": first["pid"]}


# -- failures -----------------------------------------------------------------------------------


def test_a_handler_that_raises_reports_lambdas_error_and_stays_warm(
    function: Any, tmp_path: Path
) -> None:
    module(
        tmp_path,
        "raising",
        """
        import os
        def handler(event, context):
            if event.get("raise"):
                raise Exception(event["raise"])
            return os.getpid()
        """,
    )
    fn = function("raising.handler")
    pid = fn({}, None)
    with pytest.raises(InvocationError) as raised:
        fn({"raise": "Unauthorized"}, None)
    assert str(raised.value) == "Unauthorized"  # what the emulator reads as an authorizer's 401
    assert raised.value.error_type == "Exception"
    assert raised.value.error_message == "Unauthorized"
    assert any("raising.py" in line for line in raised.value.stack_trace)
    assert fn({}, None) == pid


def test_a_result_json_cannot_hold_is_a_marshal_error(function: Any, tmp_path: Path) -> None:
    module(
        tmp_path,
        "results",
        """
        import decimal
        def handler(event, context):
            if event.get("object"):
                return {"x": object()}
            return {"price": decimal.Decimal("1.5"), "items": [1, None, "a"]}
        """,
    )
    fn = function("results.handler")
    with pytest.raises(InvocationError) as raised:
        fn({"object": True}, None)
    assert raised.value.error_type == "Runtime.MarshalError"
    assert str(raised.value).startswith("Unable to marshal response: ")
    assert fn({}, None) == {"price": 1.5, "items": [1, None, "a"]}  # Decimal, as Lambda does


def test_an_event_that_is_not_json_is_refused_before_it_is_sent(function: Any) -> None:
    fn = function()
    with pytest.raises(InvocationError) as raised:
        fn({"x": object()}, None)
    assert raised.value.error_type == "InvalidRequestContentException"
    assert fn({}, None)["calls"] == 1  # the worker never saw it


def test_a_timeout_kills_the_worker_and_the_next_call_starts_cold(function: Any) -> None:
    fn = function(timeout_s=0.5)
    pid = fn({}, None)["pid"]
    started = time.monotonic()
    with pytest.raises(InvocationTimeoutError) as raised:
        fn({"sleep": 30}, None)
    assert time.monotonic() - started < 5
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.error_type == "Sandbox.Timedout"
    assert str(raised.value) == "Task timed out after 0.50 seconds"
    assert gone(pid)
    assert fn({}, None)["calls"] == 1  # a new sandbox: module state starts over
    assert fn.pids
    assert pid not in fn.pids


def test_the_callers_remaining_time_bounds_the_call(function: Any) -> None:
    fn = function(timeout_s=30)
    started = time.monotonic()
    with pytest.raises(InvocationTimeoutError):
        fn({"sleep": 30}, LambdaContext(0.5))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("event", "reason"),
    [({"exit": 3}, "exit status 3"), ({"signal": signal.SIGKILL}, "signal: killed")],
    ids=["os._exit", "SIGKILL"],
)
def test_a_worker_that_dies_fails_its_call_and_is_replaced(
    function: Any, event: dict[str, Any], reason: str
) -> None:
    fn = function()
    pid = fn({}, None)["pid"]
    with pytest.raises(InvocationError) as raised:
        fn(event, None)
    assert raised.value.error_type == "Runtime.ExitError"
    assert str(raised.value).endswith(f"Runtime exited with error: {reason}")
    assert gone(pid)
    assert fn({}, None)["calls"] == 1


def test_an_idle_worker_killed_from_outside_is_replaced_quietly(function: Any) -> None:
    fn = function()
    pid = fn({}, None)["pid"]
    os.kill(pid, signal.SIGKILL)
    poll(lambda: zombie(pid), "the worker's death")
    assert fn({}, None)["calls"] == 1
    assert gone(pid)


@pytest.mark.parametrize(
    ("handler", "source", "error_type", "message"),
    [
        (
            "missing.handler",
            None,
            "Runtime.ImportModuleError",
            "Unable to import module 'missing': No module named 'missing'",
        ),
        (
            "counter.nothing",
            None,
            "Runtime.HandlerNotFound",
            "Handler 'nothing' missing on module 'counter'",
        ),
        ("broken.handler", "def handler(:\n", "Runtime.UserCodeSyntaxError", None),
        ("failing.handler", "raise RuntimeError('no config')\n", "RuntimeError", "no config"),
        (
            "imports.handler",
            "import not_installed_anywhere\n",
            "Runtime.ImportModuleError",
            "Unable to import module 'imports': No module named 'not_installed_anywhere'",
        ),
    ],
    ids=["no-module", "no-attribute", "syntax", "raises-at-import", "missing-dependency"],
)
def test_an_init_failure_is_reported_as_lambda_does(
    function: Any,
    tmp_path: Path,
    handler: str,
    source: str | None,
    error_type: str,
    message: str | None,
) -> None:
    if source is not None:
        (tmp_path / f"{handler.partition('.')[0]}.py").write_text(source, encoding="utf-8")
    fn = function(handler)
    with pytest.raises(InvocationError) as raised:
        fn({}, None)
    assert raised.value.error_type == error_type
    if message is not None:
        assert str(raised.value) == message
    assert fn.pids == frozenset()  # the failed sandbox is gone


def test_after_an_import_error_the_next_call_imports_again(function: Any, tmp_path: Path) -> None:
    (tmp_path / "later.py").write_text("import not_yet\n", encoding="utf-8")
    fn = function("later.handler")
    with pytest.raises(InvocationError, match="No module named 'not_yet'"):
        fn({}, None)
    (tmp_path / "later.py").write_text("def handler(event, context):\n    return 'ok'\n")
    assert fn({}, None) == "ok"


# -- logs ---------------------------------------------------------------------------------------


def test_prints_reach_the_log_and_never_the_protocol(function: Any, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="wsfanout.local.functions")
    module(
        tmp_path,
        "chatty",
        """
        import logging, os, struct, sys
        print("imported")
        def handler(event, context):
            print("to stdout")
            print("to stderr", file=sys.stderr)
            fake = b'{"result": "forged"}'
            sys.stdout.buffer.write(struct.pack(">I", len(fake)) + fake + b"\\n")
            os.write(1, b"straight to fd 1\\n")
            logging.warning("a warning")
            print("x" * 200_000)  # more than a pipe holds: read as it comes
            return {"real": True}
        """,
    )
    fn = function("chatty.handler", name="chatty")
    assert fn({}, None) == {"real": True}
    assert fn({}, None) == {"real": True}
    fn.close()  # every line is logged by the time close returns
    lines = [r.getMessage() for r in caplog.records if r.name == "wsfanout.local.functions.chatty"]
    for text in ("imported", "to stdout", "to stderr", "straight to fd 1"):
        assert f"[chatty] {text}" in lines
    assert any(line.startswith("[chatty] [WARNING]") and "a warning" in line for line in lines)
    assert sum(line.count("x") for line in lines) >= 400_000


def test_a_handlers_error_is_logged_as_lambda_logs_it(
    function: Any, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="wsfanout.local.functions")
    module(tmp_path, "bad", "def handler(event, context):\n    raise KeyError('room')\n")
    fn = function("bad.handler", name="bad")
    with pytest.raises(InvocationError):
        fn({}, None)
    fn.close()
    assert "[bad] [ERROR] KeyError: 'room'" in [r.getMessage() for r in caplog.records]


# -- closing ------------------------------------------------------------------------------------


def test_close_leaves_no_process(function: Any) -> None:
    fn = function(concurrency=3)
    start = threading.Barrier(3)

    def call(_n: int) -> int:
        start.wait(WAIT_S)
        return int(fn({"sleep": 0.2}, None)["pid"])

    with ThreadPoolExecutor(3) as pool:
        pids = set(pool.map(call, range(3)))
    assert len(pids) == 3
    fn.close()
    assert all(gone(pid) for pid in pids)
    assert fn.pids == frozenset()
    fn.close()  # idempotent
    with pytest.raises(ConfigurationError, match="closed"):
        fn({}, None)


def test_close_kills_a_busy_worker_and_fails_its_call(function: Any, tmp_path: Path) -> None:
    module(
        tmp_path,
        "sleeper",
        """
        import os, pathlib, time
        def handler(event, context):
            pathlib.Path(event["started"]).write_text(str(os.getpid()))
            time.sleep(30)
        """,
    )
    fn = function("sleeper.handler")
    started = tmp_path / "started"
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(fn, {"started": str(started)}, None)
        poll(started.exists, "the handler starting")
        pid = int(started.read_text())
        closing = time.monotonic()
        fn.close()
        assert time.monotonic() - closing < 3  # killed, not waited for
        with pytest.raises(InvocationError, match="signal: killed"):
            busy.result(WAIT_S)
    assert gone(pid)


def test_recycle_retires_warm_workers_and_the_next_call_loads_the_new_code(
    function: Any, tmp_path: Path
) -> None:
    """What ``dev --reload`` does on a change: the idle worker stops now, a busy one finishes
    its invocation on the code it loaded and is not reused; the next call starts cold. The
    module comes from ``import_paths`` (a template's directory), there being no code_dir."""
    code = tmp_path / "code"
    code.mkdir()
    source = """
        import os, pathlib, time
        def handler(event, context):
            if event.get("started"):
                pathlib.Path(event["started"]).write_text("")
                time.sleep(event["sleep"])
            return {"version": VERSION, "pid": os.getpid()}
        """
    module(code, "versioned", "VERSION = 1\n" + textwrap.dedent(source))
    fn = function("versioned.handler", code_dir=None, import_paths=[code], concurrency=2)
    started = tmp_path / "started"
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(fn, {"started": str(started), "sleep": 1.0}, None)
        poll(started.exists, "the busy invocation starting")
        idle = fn({}, None)["pid"]  # a second worker, idle once this returns
        # another size: a .pyc is checked by source mtime (seconds) and size
        module(code, "versioned", "VERSION = 20\n" + textwrap.dedent(source))
        fn.recycle()
        assert gone(idle)
        finished = busy.result(WAIT_S)
    assert finished["version"] == 1  # the invocation in flight ran on the code it had loaded
    poll(lambda: gone(finished["pid"]), "the busy worker retiring after its call")
    fresh = fn({}, None)
    assert fresh["version"] == 20
    assert fresh["pid"] not in {idle, finished["pid"]}
    assert fn.pids == {fresh["pid"]}


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "not a function name"),
        ({"handler": "nodot"}, "module.attribute"),
        ({"timeout_s": 0}, "timeout"),
        ({"timeout_s": 901}, "timeout"),
        ({"memory_mb": 64}, "memory"),
        ({"concurrency": 0}, "concurrency"),
        ({"environment": {"_HANDLER": "x.y"}}, "Lambda sets _HANDLER"),
        ({"environment": {"N": 1}}, "strings"),
        ({"code_dir": Path("/nonexistent-wsfanout")}, "not a directory"),
    ],
)
def test_settings_lambda_would_refuse_are_refused(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    settings: dict[str, Any] = {
        "name": "fn",
        "handler": "app.handler",
        "code_dir": tmp_path,
        "environment": {},
        "timeout_s": 3,
        **kwargs,
    }
    with pytest.raises(InvalidInputError, match=message):
        ProcessFunction(settings.pop("name"), settings.pop("handler"), **settings)


# -- the real route handler behind the emulator ---------------------------------------------------


async def test_the_route_handler_as_a_process_behind_the_emulator(
    moto_url: str, table_name: str, dynamodb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    route = ProcessFunction(
        "wsfanout-route",
        "wsfanout.handlers.route.handler",
        code_dir=None,
        environment={
            **CREDENTIALS,
            "CONNECTIONS_TABLE": table_name,
            "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
        },
        timeout_s=WAIT_S,
    )
    try:
        emulator = Emulator(route_handler=route, stage="local")
        async with serve_emulator(emulator) as base:
            url = f"ws://{base.removeprefix('http://')}/local"
            async with connect(url, user_agent_header="alice", open_timeout=WAIT_S) as alice:
                with anyio.fail_after(WAIT_S):
                    await alice.send(json.dumps({"action": "joinRoom", "room": "lobby"}))
                    ack = json.loads(await alice.recv())
                assert ack == {"type": "ack", "action": "joinRoom", "room": "lobby", "seq": 0}
                alice_id = emulator.connection_id_of(user_agent="alice")
                items = (await dynamodb.scan(TableName=table_name))["Items"]
                keys = {(i["PK"]["S"], i["SK"]["S"]) for i in items}
                assert ("CONN#" + str(alice_id), "ROOM#lobby") in keys
                assert {i["endpoint"]["S"] for i in items if i["SK"]["S"] == "CONN"} == {
                    f"{base}/local"
                }
                assert len(route.pids) == 1  # $connect and joinRoom, one warm container
        # $disconnect ran in the same process and removed the connection and its membership.
        assert (await dynamodb.scan(TableName=table_name))["Items"] == []
    finally:
        with caplog.at_level(logging.INFO, logger="wsfanout.local.functions"):
            await anyio.to_thread.run_sync(route.close)
    # the worker closed its runtime on the way out: no aiohttp session was left to complain
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]


async def test_a_process_function_behind_the_sqs_mapping(
    sqs: Any, tmp_path: Path, function: Any
) -> None:
    module(
        tmp_path,
        "consumer",
        """
        import json, os
        def handler(event, context):
            with open(os.environ["OUT"], "a", encoding="utf-8") as out:
                for record in event["Records"]:
                    out.write(json.dumps([record["body"], os.getpid()]) + "\\n")
            return {"batchItemFailures": []}
        """,
    )
    out = tmp_path / "handled.jsonl"
    consumer = function("consumer.handler", name="consumer", environment={"OUT": str(out)})
    url = (await sqs.create_queue(QueueName=f"procs-{uuid.uuid4().hex[:10]}"))["QueueUrl"]
    try:
        for body in ("one", "two", "three"):
            await sqs.send_message(QueueUrl=url, MessageBody=body)
        poller = SqsPoller(sqs, url, consumer, function_timeout_s=WAIT_S, wait_s=0)
        assert await poller.drain() >= 1
        handled = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(body for body, _pid in handled) == ["one", "three", "two"]
        assert {pid for _body, pid in handled} == set(consumer.pids)  # one warm container
        assert poller.stats.deleted == 3
    finally:
        await sqs.delete_queue(QueueUrl=url)
