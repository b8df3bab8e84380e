"""Sampling schemes behind a registry, one pure planning function per file (as Mosaic streaming keeps its
shuffle algorithms). Adding a scheme is one file with ``plan`` and ``batches`` and one line here."""

from jetstore.errors import SchemaError
from jetstore.sampler.schemes import sequential, weighted
from jetstore.sampler.schemes.base import EpochParams, Scheme, SlotPlan, UnitRead

SCHEMES: dict[str, Scheme] = {s.name: s for s in (weighted.SCHEME, sequential.SCHEME)}


def get_scheme(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except KeyError:
        raise SchemaError(f"unknown sampling scheme '{name}' (choose from {', '.join(SCHEMES)})") from None


__all__ = ["SCHEMES", "EpochParams", "Scheme", "SlotPlan", "UnitRead", "get_scheme"]
