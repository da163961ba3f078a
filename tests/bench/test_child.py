"""The child's own figures: what it reports must be its own, not its parent's."""

from __future__ import annotations

import resource
import subprocess
import sys

_MB = 2**20


def test_peak_rss_is_the_childs_own_not_the_parents() -> None:
    # The parent holds far more than the child ever will; Linux's ru_maxrss would carry that
    # over execve into the child.
    ballast = b"x" * (384 * _MB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 >= 384
    code = (
        "from wsfanout.bench.child import peak_rss_mb\n"
        "own = b'y' * (96 * 2**20)\n"
        "print(peak_rss_mb())\n"
    )
    answer = subprocess.run(  # noqa: S603  (our own interpreter, fixed code)
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    reported = float(answer.stdout)
    assert 96 < reported < 300  # its own 96 MB counted; the parent's 384 MB not
    del ballast
