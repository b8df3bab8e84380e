"""PNG plots of stored statistics: per class the pT-eta distribution before and after weighting, and each
input variable raw and standardised (matplotlib, mplhep CMS style when installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jetstore.config.weaver import TrainingConfig
from jetstore.stats.result import StatsResult


def write_plots(stats: StatsResult, config: TrainingConfig, directory: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        import mplhep

        plt.style.use(mplhep.style.CMS)
    except ImportError:  # plots stay readable in matplotlib's default style
        pass
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    spec = config.weights
    if spec is not None:
        for label, hist in stats.class_hists.items():
            after = hist * stats.weight_tables[label]
            figure, axes = plt.subplots(1, 2, figsize=(16, 7))
            for axis, data, title in ((axes[0], hist, "before weighting"), (axes[1], after, "after weighting")):
                mesh = axis.pcolormesh(np.arange(len(spec.x_bins)), spec.y_bins, data.T, cmap="viridis")
                axis.set_xticks(np.arange(len(spec.x_bins)), [f"{b:g}" for b in spec.x_bins], rotation=60,
                                fontsize=11)
                axis.set_xlabel(f"{spec.x_var} (bin edges)", fontsize=16)
                axis.set_ylabel(spec.y_var, fontsize=16)
                axis.set_title(f"{label}: {title} ({data.sum():.0f} jets)", fontsize=16)
                figure.colorbar(mesh, ax=axis)
            figure.tight_layout()
            written.append(_save(figure, directory / f"reweight_{label}.png"))
    for name, variable in stats.variables.items():
        h = variable.histogram
        figure, axes = plt.subplots(1, 2, figsize=(16, 6))
        axes[0].stairs(h["raw_counts"], h["raw_edges"], fill=True, alpha=0.7)
        axes[0].axvline(variable.center, color="k", linestyle="--", label=f"median {variable.center:.3g}")
        axes[0].axvspan(variable.p16, variable.p84, color="orange", alpha=0.2, label="16–84%")
        axes[0].set_xlabel(f"{name} (raw)", fontsize=16)
        axes[0].legend(fontsize=12)
        axes[1].stairs(h["std_counts"], h["std_edges"], fill=True, alpha=0.7, color="tab:green")
        axes[1].set_xlabel(f"{name} standardised (scale {variable.scale:.3g}, clipped)", fontsize=16)
        for axis in axes:
            axis.set_ylabel("entries", fontsize=16)
            axis.set_yscale("log")
        figure.tight_layout()
        written.append(_save(figure, directory / f"variable_{name}.png"))
    return written


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
