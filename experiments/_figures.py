"""Figure helpers shared by the experiment scripts (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np
from etils import epath


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """Lays out and closes `fig`; process 0 writes it as a PNG at `path` (a local or gs:// path)."""
    fig.tight_layout()
    if jax.process_index() == 0:
        with epath.Path(path).open("wb") as f:
            fig.savefig(f, dpi=dpi, format="png")
    pyplot().close(fig)


def image_grid(rows: Sequence[Sequence[tuple[np.ndarray, str]]], path: str | os.PathLike, cmap: str = "gray",
               panel_size: tuple[float, float] = (1.6, 1.7), fontsize: int = 8, dpi: int = 110) -> None:
    """Writes rows of image panels side by side, without axes.

    Args:
      rows: rows[r] is a list of (image, title); an image is [height, width]
        (drawn with `cmap`) or [height, width, 3], with values in [0, 1]
        (clipped); an empty title draws none.
      path: the PNG to write.
      cmap: colour map of single-channel panels.
      panel_size: (width, height) of one panel in inches.
      fontsize: of the titles.
      dpi: of the written file.
    """
    plt = pyplot()
    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(panel_size[0] * columns, panel_size[1] * len(rows)),
                             squeeze=False)
    for axes_row, row in zip(axes, rows, strict=False):
        for ax, (image, title) in zip(axes_row, row, strict=False):
            image = np.asarray(image)
            ax.imshow(np.clip(image, 0.0, 1.0), cmap=None if image.ndim == 3 else cmap, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
            if title:
                ax.set_title(title, fontsize=fontsize)
        for ax in axes_row:
            ax.axis("off")
    save(fig, path, dpi)
