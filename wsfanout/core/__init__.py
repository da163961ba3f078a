"""Pure code: the engine, pacing, job decisions, contracts, client protocol, JWT checks.

Nothing here imports botocore, aiohttp, aioboto3, Powertools or :mod:`wsfanout.aws`.
"""

__all__: list[str] = []
