"""Handlers importable from the running environment, for functions without a code directory
(``tests/local/test_functions.py``): kept apart so a worker imports only this, quickly."""

from __future__ import annotations

import os
from typing import Any


def task_root(event: Any, context: Any) -> dict[str, str]:
    """Where the sandbox's code lives, and its working directory."""
    return {"root": os.environ["LAMBDA_TASK_ROOT"], "cwd": os.getcwd()}
