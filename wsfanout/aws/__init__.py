"""Adapters to AWS: registry, job progress, SQS, endpoints, transports, one error map."""

__all__: list[str] = []
