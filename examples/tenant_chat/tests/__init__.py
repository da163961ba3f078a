"""The tenant chat's tests, on wsfanout's in-memory test client."""
