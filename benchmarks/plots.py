"""The look every benchmark plot shares: one figure, one axis, a log x axis, saved as PNG and closed.

A latency percentile plot (an x axis titled "percentile") is laid out as HDR
histogram plots are: x is 1 / (1 - p), so that each further "nine" takes the
same width, and the ticks read as percentages (0%, 90%, 99%, 99.9%, ...), not
as the powers of ten that x is.
"""

from __future__ import annotations

from pathlib import Path


def new_plot():
    """(figure, axis) of the standard size, drawn without a screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))


PERCENTILE_AXIS = "percentile"  # the x label that makes an axis of 1 / (1 - p) read as percentages


def percentile_x(percentile: float) -> float:
    """Where a percentile (0 to 100, below 100) goes on a percentile plot's x axis: 1 / (1 - p)."""
    return 1 / (1 - percentile / 100)


def percentile_label(x: float) -> str:
    """The percentage an x of a percentile plot stands for: 1 -> "0%", 10 -> "90%", 1000 -> "99.9%"."""
    return f"{100 * (1 - 1 / x):.10g}%"


def label_percentiles(axis) -> None:
    """Tick a log x axis of 1 / (1 - p) at 0%, 90%, 99%, 99.9%, ... as far as the data goes."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    highest = max(1.0, axis.dataLim.x1 if axis.dataLim.width >= 0 else 1.0)
    ticks = [1.0]
    while len(ticks) < 2 or ticks[-1] < highest * (1 - 1e-9):  # one more "nine" until the data's end is covered
        ticks.append(ticks[-1] * 10)
    axis.set_xlim(1.0, ticks[-1])
    axis.xaxis.set_major_locator(FixedLocator(ticks))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: percentile_label(x)))
    axis.xaxis.set_minor_formatter(NullFormatter())


def save_plot(figure, axis, path: Path, *, title: str, xlabel: str, ylabel: str) -> Path:
    """Label, grid and legend the axis (x on a log scale), write the PNG, free the figure.

    With ``xlabel`` "percentile" the x axis holds 1 / (1 - p) and is ticked
    in percentages (:func:`label_percentiles`). Setting the scale resets an
    axis's ticks, so they are laid out here, after it.
    """
    import matplotlib.pyplot as plt

    axis.set_xscale("log")
    if xlabel == PERCENTILE_AXIS:
        label_percentiles(axis)
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
