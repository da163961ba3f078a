"""Benchmarks: the engine against baselines on moto server and the local endpoint."""

__all__: list[str] = []
