"""Plots of the sweeps (matplotlib, the optional ``plot`` extra; drawn off-screen to a PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..exceptions import ConfigurationError
from .harness import Run

__all__ = ["plot_distributed", "plot_scaling", "require_matplotlib"]


def require_matplotlib() -> None:
    """Fail before a long sweep, not after it, when ``--plot`` cannot be honoured."""
    try:
        import matplotlib  # noqa: F401, PLC0415
    except ImportError:
        raise ConfigurationError("--plot needs matplotlib: pip install 'wsfanout[plot]'") from None


def _pyplot() -> Any:
    require_matplotlib()
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def plot_scaling(runs: Sequence[Run], path: str) -> None:
    """Throughput against concurrency (a line per N), against N (a line per concurrency), and
    peak RSS against N."""
    plt = _pyplot()
    sizes = sorted({r.connections for r in runs})
    concurrencies = sorted({r.concurrency for r in runs})
    at = {(r.connections, r.concurrency): r for r in runs}
    figure, (by_c, by_n, memory) = plt.subplots(1, 3, figsize=(15, 4.5))
    for size in sizes:
        points = [(c, at[(size, c)].rate) for c in concurrencies if (size, c) in at]
        by_c.plot(*zip(*points, strict=True), marker="o", label=f"N={size:,}")
    for concurrency in concurrencies:
        points = [(n, at[(n, concurrency)].rate) for n in sizes if (n, concurrency) in at]
        by_n.plot(*zip(*points, strict=True), marker="o", label=f"C={concurrency}")
        rss = [(n, at[(n, concurrency)].peak_rss_mb) for n in sizes if (n, concurrency) in at]
        memory.plot(*zip(*rss, strict=True), marker="o", label=f"C={concurrency}")
    by_c.set(
        xscale="log",
        xlabel="senders (concurrency)",
        ylabel="deliveries/s",
        title="throughput vs concurrency",
    )
    by_n.set(xscale="log", xlabel="connections (N)", ylabel="deliveries/s", title="throughput vs N")
    memory.set(
        xscale="log",
        xlabel="connections (N)",
        ylabel="peak RSS (MB)",
        title="memory vs N",
        ylim=(0, None),
    )
    for axes in (by_c, by_n, memory):
        axes.grid(visible=True, alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_distributed(segments: Sequence[int], runs: Sequence[Run], path: str) -> None:
    """Wall time of one job against the number of segments (= workers)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4.5))
    axes.plot(list(segments), [r.elapsed_s for r in runs], marker="o")
    axes.set(
        xscale="log",
        xlabel="segments = concurrent workers",
        ylabel="wall time (s)",
        title=f"one job, N={runs[0].connections:,}" if runs else "one job",
        ylim=(0, None),
    )
    axes.set_xticks(list(segments), [str(s) for s in segments])
    axes.grid(visible=True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
