"""Train / held-out splits: a fixed pseudo-random part of the jets, decided per jet by a hash of its input file's
name and entry number (the ``_entry`` column every dataset keeps), so a jet is in the same part on every machine,
in every run, wherever the inputs lay, and however they were sharded or sorted."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xxhash

from jetstore.model.splitmix import MIX1, MIX2

PARTS = ("all", "train", "holdout")


@dataclass(frozen=True)
class Split:
    """``holdout``: a ``fraction`` of the jets; ``train``: the others; ``all``: every jet."""

    part: str = "all"
    fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"split must be one of {', '.join(PARTS)}, got {self.part!r}")
        if not 0 <= self.fraction < 1:
            raise ValueError(f"the held-out fraction must be in [0, 1), got {self.fraction}")

    @property
    def active(self) -> bool:
        return self.part != "all" and self.fraction > 0

    @property
    def share(self) -> float:
        """The expected share of the jets in this part."""
        if not self.active:
            return 1.0
        return self.fraction if self.part == "holdout" else 1.0 - self.fraction

    def mask(self, sources: str | tuple[str, ...], entries: np.ndarray, inputs: np.ndarray | None = None) -> np.ndarray:
        """Which jets are in this part, by their input file (path or URL; only its name counts) and entry number:
        ``sources[inputs[i]]`` and ``entries[i]`` (``inputs`` None: every jet of ``sources[0]``)."""
        if not self.active:
            return np.ones(len(entries), bool)
        sources = (sources,) if isinstance(sources, str) else sources
        salts = np.array([xxhash.xxh64_intdigest(s.rstrip("/").rsplit("/", 1)[-1].encode()) for s in sources],
                         np.uint64)
        held = _uniform(salts[inputs] if inputs is not None else salts[0], entries) < self.fraction
        return held if self.part == "holdout" else ~held


def _uniform(salt: np.uint64 | np.ndarray, entries: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per entry: splitmix64's finaliser of (salt + entry)."""
    with np.errstate(over="ignore"):
        x = np.asarray(entries, np.uint64) + np.asarray(salt, np.uint64)
        x = (x ^ (x >> np.uint64(30))) * MIX1
        x = (x ^ (x >> np.uint64(27))) * MIX2
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53
