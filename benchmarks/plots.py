"""The look every benchmark plot shares: one figure, one axis, a log x axis, saved as PNG and closed."""
from __future__ import annotations

from pathlib import Path


def new_plot():
    """(figure, axis) of the standard size, drawn without a screen."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=(7, 4.5))


def save_plot(figure, axis, path: Path, *, title: str, xlabel: str, ylabel: str) -> Path:
    """Label, grid and legend the axis (x on a log scale), write the PNG, free the figure."""
    import matplotlib.pyplot as plt
    axis.set_xscale("log")
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
