"""Build wsfanout's own Lambda artifact, ``build/lambda.zip`` (arm64, Python 3.12), for
deploy/template.yaml: ``make package`` runs this.

The build is :mod:`wsfanout.cli.package` (``wsfanout package``) run on this checkout; this script
only sets its defaults (``--app-dir`` the checkout, ``--out`` its ``build/``) and imports it from
the checkout beside it, whatever wsfanout the interpreter has installed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wsfanout.cli.arguments import OneLineParser  # noqa: E402  (from the checkout, after sys.path)
from wsfanout.cli.package import (  # noqa: E402
    LAMBDA_PYTHON,
    SERVICES,
    BuildError,
    add_package_arguments,
    build,
    normalize,
    prune,
    requirement_name,
    run_package,
    runtime_requirements,
    write_zip,
)

__all__ = [
    "LAMBDA_PYTHON",
    "ROOT",
    "SERVICES",
    "BuildError",
    "build",
    "main",
    "normalize",
    "prune",
    "requirement_name",
    "runtime_requirements",
    "write_zip",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build, then print where the artifact is and how big."""
    parser = OneLineParser(
        prog="package.py", description="Build the wsfanout Lambda artifact (arm64, Python 3.12)."
    )
    add_package_arguments(parser)
    parser.set_defaults(app_dir=ROOT)
    return run_package(parser.parse_args(argv), "package.py")


if __name__ == "__main__":
    sys.exit(main())
