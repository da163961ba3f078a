"""A user's app for the local stack: ``wsfanout dev --app MODULE:ATTRIBUTE``, as uvicorn's
``main:app``.

``MODULE`` is imported with the app's directory (the current one, by default) first on
``sys.path``, so a file beside the developer resolves before anything installed under the same
name. ``ATTRIBUTE`` (dotted for nested names) is a :class:`wsfanout.App`, whose
``lambda_handler`` then serves every route, or a plain Lambda handler ``(event, context) ->
dict``, used as is. Every way this can go wrong is an
:class:`~wsfanout.exceptions.InvalidInputError` with a one-line reason, which the command line
turns into exit status 2.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ..app import App
from ..exceptions import InvalidInputError
from .emulator import Handler

__all__ = ["app_directory", "handler_of", "load_handler", "parse_app"]


def parse_app(spec: str) -> tuple[str, str]:
    """Split ``MODULE:ATTRIBUTE``.

    :raises InvalidInputError: the ``:`` or either side is missing.
    """
    module, colon, attribute = spec.partition(":")
    if not colon or not module.strip() or not attribute.strip():
        raise InvalidInputError(
            f"--app must be MODULE:ATTRIBUTE (as in main:app), got {spec!r}: the ':' is missing"
            if not colon
            else f"--app must be MODULE:ATTRIBUTE (as in main:app), got {spec!r}"
        )
    return module.strip(), attribute.strip()


def _not_found(module: str, directory: Path) -> InvalidInputError:
    return InvalidInputError(
        f"no module named {module!r} (imported from the current directory, {directory})"
    )


def app_directory(spec: str, directory: Path | None = None) -> Path:
    """The directory holding the app's top-level module or package, found without importing
    anything (the reloader watches it, and must not run the user's code itself).

    :raises InvalidInputError: a bad ``spec``, or no such top-level module.
    """
    module, _ = parse_app(spec)
    where = (directory or Path.cwd()).resolve()
    top = module.split(".")[0]
    found = importlib.machinery.PathFinder.find_spec(top, [str(where), *sys.path])
    if found is None or found.origin in (None, "built-in", "frozen"):
        raise _not_found(module, where)
    if found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations))).resolve()
    return Path(str(found.origin)).resolve().parent


def load_handler(spec: str, directory: Path | None = None) -> Handler:
    """Import ``spec``'s module from ``directory`` (default: the current one) and return the
    route handler it names.

    ``directory`` is put first on ``sys.path`` for good, as uvicorn does: the app's own imports
    of its sibling modules must keep resolving while it runs.

    :raises InvalidInputError: a bad ``spec``; the module is not found or fails to import; the
        attribute is missing; or it is neither an ``App`` nor a ``(event, context)`` callable.
    """
    module_name, attribute = parse_app(spec)
    where = (directory or Path.cwd()).resolve()
    if not sys.path or sys.path[0] != str(where):
        sys.path.insert(0, str(where))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(f"{missing}."):
            raise _not_found(module_name, where) from None
        raise InvalidInputError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # the user's module failed at import: one line, not a traceback
        detail = " ".join(str(exc).split())
        raise InvalidInputError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {detail}"
        ) from None
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise InvalidInputError(
                f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return handler_of(value, spec)


def handler_of(value: Any, spec: str) -> Handler:
    """``value``'s route handler: an ``App``'s ``lambda_handler``, or ``value`` itself if it can
    be called as ``handler(event, context)``.

    :raises InvalidInputError: anything else (a class, a non-callable, a wrong signature).
    """
    if isinstance(value, App):
        return value.lambda_handler
    if callable(value) and not isinstance(value, type) and _takes_event_and_context(value):
        return cast("Handler", value)
    what = f"the class {value.__name__}" if isinstance(value, type) else type(value).__name__
    raise InvalidInputError(
        f"{spec} is {what}, not a wsfanout.App or a Lambda handler (event, context) -> dict"
    )


def _takes_event_and_context(func: Callable[..., Any]) -> bool:
    try:
        inspect.signature(func).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (some builtins): trust it
        return True
    return True
