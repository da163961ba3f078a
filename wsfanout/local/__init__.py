"""Local stand-ins for AWS services, so tests and benchmarks run without an AWS account."""

from __future__ import annotations

__all__: list[str] = []
