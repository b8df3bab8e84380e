"""``sequential``: every selected jet once, in dataset order within each slot, no shuffling (evaluation and
prediction). Slots take units round-robin; each slot's last batch may be short."""

from __future__ import annotations

from jetstore.errors import SchemaError
from jetstore.sampler.schemes.base import EpochParams, EpochRequest, EpochShape, Scheme, SlotPlan, UnitRead
from jetstore.sampler.units import UnitTable
from jetstore.sampler.world import World


def plan(units: UnitTable, params: EpochParams, rank: int, worker: int) -> SlotPlan:
    world = World(rank, params.num_ranks, worker, params.num_workers)
    slot, slots = world.slot, world.num_slots
    sizes = units.stop - units.start
    return SlotPlan(lambda: (UnitRead(0, u, 1.0, float(sizes[u])) for u in range(slot, len(units), slots)), None,
                    weighted=False, shuffle=False)


def batches(units: UnitTable, params: EpochParams) -> None:
    return None


def epoch(units: UnitTable, request: EpochRequest) -> EpochShape:
    """Every selected jet once: an epoch of another size cannot be honoured."""
    if request.jets_per_epoch is not None:
        raise SchemaError("the sequential scheme reads every selected jet once; jets_per_epoch does not apply "
                          "(use the weighted scheme, or stop early)")
    return EpochShape()


SCHEME = Scheme("sequential", plan, batches, epoch, weighted=False)
