"""``wsfanout new DIR``: the project it writes, its SAM template linted and transformed as
deploy/template.yaml is (tests/deploy), and its own tests run against this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

from tests.deploy import cfn
from wsfanout.cli.main import main
from wsfanout.cli.new import project_name

ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "app.py",
    "tests/test_app.py",
    "pyproject.toml",
    "Makefile",
    "template.yaml",
    "README.md",
}
TIMEOUT_S = 120


@pytest.fixture
def project(tmp_path: Path) -> Path:
    directory = tmp_path / "My Chat_App"
    assert main(["new", str(directory)]) == 0
    return directory


def written(directory: Path) -> set[str]:
    return {
        path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()
    }


def test_it_writes_the_project_named_after_the_directory(project: Path) -> None:
    assert written(project) == FILES
    for name in FILES:
        assert "{{name}}" not in (project / name).read_text(), name
    assert 'name = "my-chat-app"' in (project / "pyproject.toml").read_text()
    makefile = (project / "Makefile").read_text()
    assert "wsfanout dev --template template.yaml --reload" in makefile
    assert "\t$(BIN)/python -m pytest" in makefile, "recipes are indented with tabs"


def test_an_empty_directory_is_fine_and_a_nonempty_one_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["new", str(tmp_path)]) == 0
    assert written(tmp_path) == FILES
    assert capsys.readouterr().out.endswith(f"next: cd {tmp_path} && make test\n")
    before = (tmp_path / "app.py").read_text()
    (tmp_path / "app.py").write_text("mine")
    assert main(["new", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"wsfanout: error: {tmp_path} exists and is not empty\n"
    assert (tmp_path / "app.py").read_text() == "mine" != before, "nothing was overwritten"


def test_a_file_in_the_way_or_a_nameless_directory_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "taken").write_text("")
    assert main(["new", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err.endswith("exists and is not a directory\n")
    assert main(["new", str(tmp_path / "__")]) == 2
    assert "cannot make a project name" in capsys.readouterr().err
    assert not (tmp_path / "__").exists()
    with pytest.raises(SystemExit) as usage:
        main(["new"])
    assert usage.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_project_names_are_distribution_names() -> None:
    assert project_name(Path("/x/Chat.Service v2")) == "chat-service-v2"


def test_its_template_passes_cfn_lint_with_informational_rules(project: Path) -> None:
    matches = lint_file(project / "template.yaml", config=ManualArgs(include_checks=["I"]))
    assert [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches] == []


def test_its_template_runs_the_app_and_the_broadcast_worker_with_roles_of_their_own(
    project: Path,
) -> None:
    transformed = cfn.transform(cfn.load(project / "template.yaml"))
    functions = cfn.of_type(transformed, "AWS::Lambda::Function")
    assert {name: f["Properties"]["Handler"] for name, f in functions.items()} == {
        "RouteFunction": "app.handler",
        "BroadcastFunction": "wsfanout.handlers.broadcast.handler",
    }
    routes = cfn.of_type(transformed, "AWS::ApiGatewayV2::Route")
    assert {r["Properties"]["RouteKey"] for r in routes.values()} == {
        "$connect",
        "$disconnect",
        "$default",
    }
    roles = cfn.of_type(transformed, "AWS::IAM::Role")
    assert set(roles) == {"RouteRole", "BroadcastRole"}
    for name, role in roles.items():
        assert "ManagedPolicyArns" not in role["Properties"], name
        for statement in cfn.statements(role):
            assert "*" not in statement["Resource"], (name, statement)
            assert not [a for a in statement["Action"] if "*" in a], (name, statement)
    mapping = cfn.of_type(transformed, "AWS::Lambda::EventSourceMapping")
    [(_, jobs)] = mapping.items()
    assert jobs["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["BroadcastQueue", "Arn"]}


def run_in(directory: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in the generated project, with this checkout importable as ``wsfanout``."""
    return subprocess.run(  # noqa: S603  (this interpreter or its venv's ruff, fixed arguments)
        command,
        cwd=directory,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_its_own_tests_pass_against_this_checkout_and_can_fail(project: Path) -> None:
    pytest_in = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    result = run_in(project, *pytest_in)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    app = project / "app.py"
    app.write_text(app.read_text().replace('"type": "echo"', '"type": "echoed"'))
    broken = run_in(project, *pytest_in)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "1 failed, 1 passed" in broken.stdout


def test_its_code_is_clean_under_its_own_ruff_settings(project: Path) -> None:
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is in the dev extra")
    for check in (("check",), ("format", "--check")):
        result = run_in(project, str(ruff), *check, "--no-cache", ".")
        assert result.returncode == 0, result.stdout + result.stderr
