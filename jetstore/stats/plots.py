"""Plots of stored statistics (``jetstore stats --plots DIR``; the ``plots`` extra): per class the
reweighting-plane distribution before and after weighting on the config's true bin edges, and each
standardised input variable raw and standardised. ``hist`` + mplhep, an optional experiment label, PNG at 150 dpi
and PDF.

Axis labels come from a small table of the quantities jet-tagging inputs are made of (symbol and unit) and of the
objects they belong to, so ``jet_pfcand_dxy`` reads "PF candidate $d_{xy}$ [cm]" and an unknown name is shown as
it is (:func:`axis_label`)."""

from __future__ import annotations

from pathlib import Path

import hist
import matplotlib.style
import mplhep
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from jetstore.config.weaver import TrainingConfig
from jetstore.stats.result import StatsResult

DPI = 150

# name suffix → (LaTeX symbol, unit); longest suffix wins
QUANTITIES: dict[str, tuple[str, str]] = {
    "pt": (r"$p_{\mathrm{T}}$", "GeV"),
    "pt_log": (r"$\log(p_{\mathrm{T}}/\mathrm{GeV})$", ""),
    "ptrel": (r"$p_{\mathrm{T}}/p_{\mathrm{T}}^{\mathrm{jet}}$", ""),
    "logptrel": (r"$\log(p_{\mathrm{T}}/p_{\mathrm{T}}^{\mathrm{jet}})$", ""),
    "energy": (r"$E$", "GeV"),
    "e": (r"$E$", "GeV"),
    "energy_log": (r"$\log(E/\mathrm{GeV})$", ""),
    "e_log": (r"$\log(E/\mathrm{GeV})$", ""),
    "erel": (r"$E/E^{\mathrm{jet}}$", ""),
    "logerel": (r"$\log(E/E^{\mathrm{jet}})$", ""),
    "mass": (r"$m$", "GeV"),
    "sdmass": (r"$m_{\mathrm{SD}}$", "GeV"),
    "msoftdrop": (r"$m_{\mathrm{SD}}$", "GeV"),
    "eta": (r"$\eta$", ""),
    "phi": (r"$\phi$", "rad"),
    "deta": (r"$\Delta\eta$", ""),
    "dphi": (r"$\Delta\phi$", "rad"),
    "deltar": (r"$\Delta R$", ""),
    "px": (r"$p_{x}$", "GeV"),
    "py": (r"$p_{y}$", "GeV"),
    "pz": (r"$p_{z}$", "GeV"),
    "dxy": (r"$d_{xy}$", "cm"),
    "dz": (r"$d_{z}$", "cm"),
    "dxysig": (r"$d_{xy}/\sigma_{d_{xy}}$", ""),
    "dzsig": (r"$d_{z}/\sigma_{d_{z}}$", ""),
    "d0val": (r"$d_{0}$", "mm"),
    "d0err": (r"$\sigma_{d_{0}}$", "mm"),
    "dzval": (r"$d_{z}$", "mm"),
    "dzerr": (r"$\sigma_{d_{z}}$", "mm"),
    "d3d": (r"$d_{3D}$", "cm"),
    "d3dsig": (r"$d_{3D}/\sigma_{d_{3D}}$", ""),
    "charge": ("charge", "e"),
    "ntracks": ("number of tracks", ""),
    "ntrack": ("number of tracks", ""),
    "chi2": (r"$\chi^{2}$", ""),
    "normchi2": (r"$\chi^{2}/n_{\mathrm{dof}}$", ""),
    "costhetasvpv": (r"$\cos\theta_{\mathrm{SV,PV}}$", ""),
    "nconstituents": ("number of constituents", ""),
    "npfcands": ("number of PF candidates", ""),
}
# name prefix → object; longest prefix wins
OBJECTS: dict[str, str] = {
    "jet_pfcand_": "PF candidate", "pfcand_": "PF candidate", "jet_sv_": "SV", "sv_": "SV", "part_": "Particle",
    "jet_lt_": "Lost track", "lt_": "Lost track", "jet_": "Jet", "fj_": "Jet", "fatjet_": "Jet",
}


def axis_label(name: str, transform: str = "") -> str:
    """``PF candidate $d_{xy}$ [cm]`` for ``jet_pfcand_dxy``; ``transform`` (e.g. "standardised") is appended
    in parentheses and drops the unit."""
    lowered = name.lower()
    prefix = max((p for p in OBJECTS if lowered.startswith(p)), key=len, default="")
    rest = lowered[len(prefix):]
    suffix = max((s for s in QUANTITIES if rest == s or rest.endswith("_" + s)), key=len, default=None)
    if suffix is None:
        text = name.replace("_", r"\_") if "$" in name else name
        return f"{text} ({transform})" if transform else text
    symbol, unit = QUANTITIES[suffix]
    owner = OBJECTS.get(prefix, "")
    label = f"{owner} {symbol}".strip()
    if transform:
        return f"{label} ({transform})"
    return f"{label} [{unit}]" if unit else label


def write_plots(stats: StatsResult, config: TrainingConfig, directory: str | Path,
                experiment: str | None = None) -> list[Path]:
    """Write the plots into ``directory``; ``experiment`` (e.g. "CMS Simulation") labels every figure.
    Returns the PNG paths (a PDF is written beside each). Figures are drawn without pyplot: no backend or global
    style of the caller's session changes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.style.context(mplhep.style.CMS):
        if config.weights is not None:
            for label, counts in stats.class_hists.items():
                written.append(_reweighting(config, label, counts, stats.weight_tables[label], directory, experiment))
        for name, variable in stats.variables.items():
            written.append(_variable(name, variable, directory, experiment))
    return written


def _reweighting(config: TrainingConfig, label: str, counts: np.ndarray, table: np.ndarray, directory: Path,
                 experiment: str | None) -> Path:
    spec = config.weights
    assert spec is not None
    x_axis = hist.axis.Variable(spec.x_bins, name="x", label=axis_label(spec.x_var))
    y_axis = hist.axis.Variable(spec.y_bins, name="y", label=axis_label(spec.y_var))
    before: hist.Hist = hist.Hist(x_axis, y_axis)
    after: hist.Hist = hist.Hist(x_axis, y_axis)
    before[...] = counts
    weighted = counts * table
    after[...] = weighted / weighted.sum() if weighted.sum() > 0 else weighted
    figure = Figure(figsize=(20, 8))
    axes = figure.subplots(1, 2)
    name = label.removeprefix("label_")
    figure.suptitle(f"{name} jets: {counts.sum():,.0f} in the reweighting bins", fontsize=20)
    for axis, h, title, bar in ((axes[0], before, "before weighting", "jets"),
                                (axes[1], after, "after weighting", "fraction of sampled jets")):
        artists = mplhep.hist2dplot(h, ax=axis, cmap="viridis", cmin=np.nextafter(0, 1), cbar=False)
        figure.colorbar(artists.pcolormesh, ax=axis, label=bar)
        if spec.x_bins[0] > 0 and spec.x_bins[-1] / spec.x_bins[0] > 20:
            _log_axis(axis, spec.x_bins)
        axis.set_title(title, fontsize=18, loc="right")
        _experiment(axis, experiment)
    figure.tight_layout()
    return save_figure(figure, directory / f"reweight_{name}")


def _variable(name: str, variable, directory: Path, experiment: str | None) -> Path:
    h = variable.histogram
    figure = Figure(figsize=(20, 8))
    axes = figure.subplots(1, 2)
    raw_edges, std_edges = np.asarray(h["raw_edges"]), np.asarray(h["std_edges"])
    mplhep.histplot(np.asarray(h["raw_counts"]), raw_edges, ax=axes[0], histtype="fill", alpha=0.6,
                    label="all entries")
    axes[0].axvline(variable.center, color="k", linestyle="--", label=f"median {variable.center:.3g}")
    axes[0].axvspan(variable.p16, variable.p84, color="tab:orange", alpha=0.25, label="16th–84th percentile")
    axes[0].set_xlabel(axis_label(name))
    axes[0].set_xlim(raw_edges[0], raw_edges[-1])
    mplhep.histplot(np.asarray(h["std_counts"]), std_edges, ax=axes[1], histtype="fill", alpha=0.6,
                    color="tab:green", label=f"(x − {variable.center:.3g}) × {variable.scale:.3g}, clipped")
    axes[1].set_xlabel(axis_label(name, "standardised"))
    axes[1].set_xlim(std_edges[0], std_edges[-1])
    width = raw_edges[1] - raw_edges[0]
    for axis, bin_width in ((axes[0], width), (axes[1], std_edges[1] - std_edges[0])):
        axis.set_ylabel(f"entries / {bin_width:.3g}")
        axis.set_yscale("log")
        axis.set_ylim(bottom=0.5)  # spreading pass-1 bins over plot bins leaves fractions of an entry in the tails
        axis.legend(fontsize=14, loc="upper right")
        _experiment(axis, experiment)
    figure.tight_layout()
    return save_figure(figure, directory / f"variable_{name}")


def _log_axis(axis, edges) -> None:
    """A log-scale x axis labelled at round values (1, 2, 5 × 10^n) inside the bin range, no minor labels."""
    axis.set_xscale("log")
    low, high = edges[0], edges[-1]
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    ticks = [m * 10.0**d for d in decades for m in (1, 2, 5) if low <= m * 10.0**d <= high]
    axis.xaxis.set_major_locator(FixedLocator(ticks))
    axis.xaxis.set_major_formatter(ScalarFormatter())
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlim(low, high)


def _experiment(axis, experiment: str | None) -> None:
    if experiment:
        exp, _, text = experiment.partition(" ")
        mplhep.label.exp_text(exp, text, ax=axis, loc=0)


def save_figure(figure: Figure, stem: Path) -> Path:
    """``<stem>.png`` at ``DPI`` and ``<stem>.pdf`` (the stem may contain dots); returns the PNG path."""
    png = stem.with_name(f"{stem.name}.png")
    figure.savefig(png, dpi=DPI)
    figure.savefig(stem.with_name(f"{stem.name}.pdf"))
    return png
