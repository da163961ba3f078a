"""The public surface: what ``import wsfanout`` offers, and what every public module exports.

The expected export list is written out here on purpose: adding or dropping a public name must
be a visible change to this file, never a side effect of editing ``__init__.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib import resources
from pathlib import Path

import pytest

import wsfanout

# One sorted string, so the list reads as a whole rather than as a copy of ``__all__``.
EXPECTED_EXPORTS = set(
    """
    AllTarget App BroadcastJob Clients ConfigurationError Connection ConnectionExistsError
    ConnectionNotFoundError ConnectionRefused ConnectionsTarget Cursor DeliveryError Fanout
    FanoutReport ForbiddenError Gateway InvalidInputError LeanGateway ManagementGateway Outcome
    PayloadTooLargeError Recipient RecipientSource Registry RegistryError RetryPolicy RoomTarget
    Settings Target UsersTarget WsFanoutError __version__
    """.split()  # noqa: SIM905  (a list literal would be formatted one name a line, like __all__)
)

# Every module of the package, found rather than listed, so a new module cannot skip the checks.
PUBLIC_MODULES = sorted(
    info.name.removeprefix("wsfanout.")
    for info in pkgutil.walk_packages(wsfanout.__path__, prefix="wsfanout.")
)


def test_all_is_sorted_and_free_of_duplicates() -> None:
    assert wsfanout.__all__ == sorted(set(wsfanout.__all__))


def test_all_matches_the_expected_exports() -> None:
    assert set(wsfanout.__all__) == EXPECTED_EXPORTS


def test_every_exported_name_exists() -> None:
    missing = [name for name in wsfanout.__all__ if not hasattr(wsfanout, name)]
    assert missing == []


def test_version_is_a_string() -> None:
    assert isinstance(wsfanout.__version__, str)
    assert wsfanout.__version__


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from wsfanout import *", namespace)  # noqa: S102  (the point is to run a star import)
    namespace.pop("__builtins__")
    assert set(namespace) == EXPECTED_EXPORTS


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_declares_existing_names(name: str) -> None:
    module = importlib.import_module(f"wsfanout.{name}")
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"wsfanout.{name} has no __all__ list"
    assert exported or hasattr(module, "__path__"), f"wsfanout.{name}.__all__ is empty"
    assert len(exported) == len(set(exported)), f"wsfanout.{name}.__all__ has duplicates"
    missing = [item for item in exported if not hasattr(module, item)]
    assert missing == [], f"wsfanout.{name}.__all__ names missing attributes"


@pytest.mark.parametrize("name", sorted(EXPECTED_EXPORTS - {"__version__"}))
def test_top_level_names_are_the_module_objects(name: str) -> None:
    """A re-export is the very object its module defines, not a copy or a shadow."""
    obj = getattr(wsfanout, name)
    homes = [
        importlib.import_module(f"wsfanout.{mod}")
        for mod in PUBLIC_MODULES
        if name in importlib.import_module(f"wsfanout.{mod}").__all__
    ]
    assert homes, f"{name} is exported by the package but by no public module"
    assert all(getattr(home, name) is obj for home in homes)


def test_py_typed_ships_in_the_package() -> None:
    package_dir = Path(wsfanout.__file__).parent
    assert (package_dir / "py.typed").is_file()
    assert resources.files("wsfanout").joinpath("py.typed").is_file()
