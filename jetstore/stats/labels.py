"""Axis labels for plots: a small table of the quantities jet-tagging inputs are made of (symbol and unit)
and of the objects they belong to, so ``jet_pfcand_dxy`` reads "PF candidate $d_{xy}$ [cm]" and an unknown
name is shown as it is."""

from __future__ import annotations

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
