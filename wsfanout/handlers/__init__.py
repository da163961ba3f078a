"""Thin AWS Lambda entrypoints over the core: route events, broadcast jobs, the authorizer."""

__all__: list[str] = []
