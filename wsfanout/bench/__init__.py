"""Benchmarks: the engine against baselines on moto server and the local endpoint."""

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHMS", "ENTRYPOINTS", "NO_REGISTRY"]

# What ``wsfanout bench --algorithms`` accepts (here, so the parser needs no bench dependency).
# "engine-memory" is a diagnostic, not the engine as shipped: the same engine and transport
# with the registry served from memory, as the floor's ids are. "engine-raw" is the engine over
# FANOUT_TRANSPORT=raw.
ALGORITHMS = (
    "seed",
    "gather",
    "floor",
    "engine",
    "engine-botocore",
    "engine-memory",
    "floor-raw",
    "engine-raw",
)
DEFAULT_ALGORITHMS = ALGORITHMS[:5]
# Handed their ids instead of reading the registry; so they neither clean up gone connections
# nor load moto server themselves (the comparison runs a registry reader beside them).
NO_REGISTRY = frozenset({"floor", "floor-raw", "engine-memory"})

# The Lambda entrypoints of deploy/template.yaml, by the name ``wsfanout bench coldstart`` uses.
ENTRYPOINTS = {
    "route": "wsfanout.handlers.route",
    "broadcast": "wsfanout.handlers.broadcast",
    "authorizer": "wsfanout.handlers.authorizer",
}
