"""Thin AWS Lambda entrypoints over the core: route events, broadcast jobs, the authorizer.

Every module here needs the ``[lambda]`` extra (AWS Lambda Powertools, PyJWT); importing one
without it raises a one-line :class:`~wsfanout.exceptions.ConfigurationError` naming the extra
(on Lambda, the function's import error says what to install).
"""

from ..extras import missing_extra

try:
    import aws_lambda_powertools  # noqa: F401  (checked once for every handler module)
except ModuleNotFoundError as exc:
    raise missing_extra("lambda", exc) from None

__all__: list[str] = []
