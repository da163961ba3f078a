"""Example apps built on wsfanout's public API; each is a package with its own tests."""
