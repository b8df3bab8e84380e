"""Sampling schemes behind a registry, one pure planning function per file (as Mosaic streaming keeps its
shuffle algorithms). Adding a scheme is one file with ``plan``, ``batches`` and ``epoch`` and one line here, or
a third-party package's ``jetstore.schemes`` entry point (:mod:`jetstore.registry`)."""

from jetstore.errors import SchemaError
from jetstore.registry import Registry
from jetstore.sampler.schemes import sequential, weighted
from jetstore.sampler.schemes.base import EpochParams, EpochRequest, EpochShape, Scheme, SlotPlan, UnitRead

SCHEMES: Registry[Scheme] = Registry("sampling scheme", "jetstore.schemes", (weighted.SCHEME, sequential.SCHEME),
                                     SchemaError)


def get_scheme(name: str) -> Scheme:
    return SCHEMES.get(name)


__all__ = ["SCHEMES", "EpochParams", "EpochRequest", "EpochShape", "Scheme", "SlotPlan", "UnitRead", "get_scheme"]
