"""``wsfanout token`` and ``wsfanout --version``: the token is one the authorizer's verifier
accepts with the same settings (the local stack's own use of it is in test_connections)."""

from __future__ import annotations

import json
import time
from importlib.metadata import version

import pytest

from tests.cli.test_main import assert_usage_error, cli_env, run_cli_sync
from wsfanout.core.auth import verify_token
from wsfanout.exceptions import InvalidInputError
from wsfanout.settings import Settings

SECRET = "a-development-secret-of-32-bytes-or-more"
AUTH = {"AUTH_JWT_SECRET": SECRET, "AUTH_JWT_ISSUER": None, "AUTH_JWT_AUDIENCE": None}


def test_the_token_verifies_with_the_configured_secret() -> None:
    result = run_cli_sync("token", "--sub", "u_1", env=cli_env(**AUTH))
    assert result.returncode == 0, result
    [token] = result.stdout.splitlines()
    assert SECRET not in result.stdout + result.stderr
    identity = verify_token(token, Settings(auth_jwt_secret=SECRET))
    assert (identity.user_id, identity.can_broadcast) == ("u_1", False)
    assert 3500 < identity.claims["exp"] - time.time() <= 3600
    with pytest.raises(InvalidInputError, match="bad signature"):
        verify_token(token, Settings(auth_jwt_secret=SECRET + "-other"))


def test_broadcast_ttl_issuer_and_audience_reach_the_claims() -> None:
    env = cli_env(
        **{**AUTH, "AUTH_JWT_ISSUER": "me", "AUTH_JWT_AUDIENCE": "ws", "AUTH_BROADCAST_CLAIM": "b"}
    )
    result = run_cli_sync("token", "--sub", "u_2", "--broadcast", "--ttl", "30m", "--json", env=env)
    assert result.returncode == 0, result
    [line] = result.stdout.splitlines()
    shown = json.loads(line)
    assert (shown["sub"], shown["broadcast"]) == ("u_2", True)
    settings = Settings(
        auth_jwt_secret=SECRET,
        auth_jwt_issuer="me",
        auth_jwt_audience="ws",
        auth_broadcast_claim="b",
    )
    identity = verify_token(shown["token"], settings)
    assert identity.can_broadcast is True
    assert 1700 < identity.claims["exp"] - time.time() <= 1800
    assert shown["expiresAt"].startswith(time.strftime("%Y-", time.gmtime(identity.claims["exp"])))
    with pytest.raises(InvalidInputError, match="wrong audience"):
        verify_token(shown["token"], settings.model_copy(update={"auth_jwt_audience": "other"}))


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        pytest.param(
            ["token", "--sub", "u"], {"AUTH_JWT_SECRET": None}, "AUTH_JWT_SECRET", id="no-secret"
        ),
        pytest.param(
            ["token", "--sub", "u"], {"AUTH_JWT_SECRET": ""}, "AUTH_JWT_SECRET", id="empty"
        ),
        pytest.param(["token"], AUTH, "--sub", id="no-sub"),
        pytest.param(["token", "--sub", ""], AUTH, "user id", id="empty-sub"),
        pytest.param(["token", "--sub", "u", "--ttl", "1y"], AUTH, "duration", id="bad-ttl"),
        pytest.param(["token", "--sub", "u", "--ttl", "0"], AUTH, "between", id="zero-ttl"),
        pytest.param(["token", "--sub", "u", "--ttl", "400d"], AUTH, "between", id="long-ttl"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    args: list[str], env: dict[str, str | None], needle: str
) -> None:
    result = run_cli_sync(*args, env=cli_env(**env))
    assert_usage_error(result, needle)
    assert SECRET not in result.stderr


def test_version_prints_the_installed_version() -> None:
    result = run_cli_sync("--version")
    assert result.returncode == 0, result
    assert result.stdout == f"wsfanout {version('wsfanout')}\n"
