"""Plans of many units made together (the sampler's reads) equal the plans made one at a time: the same chunks,
output places, fetch ranges and pieces, whatever the selection; reads that are not whole units, and damaged
shards, still go through the one-at-a-time plan."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from jetstore import convert
from jetstore.dataset.dataset import Dataset
from jetstore.errors import DatasetError
from jetstore.formats.base import ReadPlan
from jetstore.formats.zarr.plans import chunk_table, unit_chunks
from jetstore.formats.zarr.reader import ShardIndex
from jetstore.io.ranges import coalesce
from jetstore.model.layout import Layout, Selection
from tests.conftest import SAMPLE_FILES

SELECTIONS = {
    "every column": None,
    "jets and a few features": Selection(("jet_pt", "jet_eta"), {"pfcand": ("jet_pfcand_pt_log",),
                                                                  "sv": ()}),
    "jets only": Selection(("jet_pt",), {}),
}


@pytest.fixture(scope="module")
def small_units(dask_client, tmp_path_factory) -> Dataset:
    """The bundled sample in 32-jet units: tens of units per shard, the last one short."""
    root = tmp_path_factory.mktemp("plans") / "units32.zarr"
    assert convert(SAMPLE_FILES, "cms_ak4", str(root), client=dask_client, jets_per_shard=700,
                   layout=Layout(chunk_jets=32), progress=False, log=lambda _: None).ok
    return Dataset.open(str(root))


def same_plan(made: ReadPlan, alone: ReadPlan) -> None:
    assert (made.start, made.stop, made.selection, made.fetch) == (alone.start, alone.stop, alone.selection,
                                                                  alone.fetch)
    a, b = made.parts, alone.parts
    assert (a.keys, a.bytes, a.packable) == (b.keys, b.bytes, b.packable)
    assert np.array_equal(a.spans, b.spans) and np.array_equal(a.where, b.where)
    assert a.chunks.keys() == b.chunks.keys()
    for name, column in b.chunks.items():
        assert a.chunks[name].dtype == column.dtype and np.array_equal(a.chunks[name], column), name


@pytest.mark.parametrize("name", SELECTIONS)
def test_plans_made_together_equal_plans_made_alone(small_units, name):
    selection = SELECTIONS[name] or small_units.manifest.columns.select(None, None)
    unit = small_units.unit_jets
    for shard in small_units.manifest.shards:
        reader = small_units.source.reader(shard)
        starts = np.random.default_rng(7).permutation(np.arange(0, shard.n_jets, unit)).tolist()
        bounds = [(start, min(start + unit, shard.n_jets)) for start in starts]
        assert bounds[-1] != (0, 0) and any(b - a < unit for a, b in bounds)  # the short last unit is among them
        made = reader.plan_units(bounds, selection)
        assert len(made) == len(bounds)
        for plan, (start, stop) in zip(made, bounds, strict=True):
            same_plan(plan, reader.plan(start, stop, selection))
        table = type(reader).decode_window([(reader, plan, reader.fetch(plan)) for plan in made])
        alone = [reader.read(selection, start, stop) for start, stop in bounds]
        assert np.array_equal(table.jets["jet_pt"], np.concatenate([t.jets["jet_pt"] for t in alone]))


def test_reads_that_are_not_whole_units_are_planned_alone(small_units):
    selection = small_units.manifest.columns.select(None, None)
    shard = small_units.manifest.shards[0]
    reader = small_units.source.reader(shard)
    bounds = [(5, 40), (64, 96), (0, 32)]
    for plan, (start, stop) in zip(reader.plan_units(bounds, selection), bounds, strict=True):
        same_plan(plan, reader.plan(start, stop, selection))
        assert plan.parts.packable == (start % 32 == 0 and stop - start == 32)


def test_a_missing_chunk_is_named_by_plans_made_together(small_units, monkeypatch):
    selection = small_units.manifest.columns.select(None, None)
    reader = small_units.source.reader(small_units.manifest.shards[0])
    index = reader.index
    arrays = dict(index.arrays)
    offsets = arrays["jets/jet_pt"].offsets.copy()
    offsets[2] = -1  # chunk 2 of jets/jet_pt lost from the index
    arrays["jets/jet_pt"] = dataclasses.replace(arrays["jets/jet_pt"], offsets=offsets)
    table, arrays = chunk_table(arrays)
    monkeypatch.setattr(reader, "index", ShardIndex(arrays, index.n_jets, index.unit_jets, index.unit_offsets, table))
    with pytest.raises(DatasetError, match=r"chunk jets/jet_pt/c/2 is missing"):
        reader.plan_units([(0, 32), (64, 96)], selection)


@pytest.mark.parametrize("max_gap", [0, 300, 3000, 1 << 16])
def test_ranges_merge_as_one_plan_s_do(small_units, max_gap):
    """The arrays not read part a unit's chunks into several ranges unless the gaps are small: each unit's ranges,
    and where each chunk lies in them, are what coalescing its chunks alone gives."""
    selection = SELECTIONS["jets and a few features"]
    shard = small_units.manifest.shards[0]
    reader = small_units.source.reader(shard)
    rule = reader._rule(selection)
    first = np.arange(0, shard.n_jets // small_units.unit_jets)
    planned = unit_chunks(reader.index.table, rule, *rule.spans(first, first + 1), max_gap)
    pieces = 0
    for k in range(len(first)):
        a, b = planned.bounds[k], planned.bounds[k + 1]
        ranges = list(zip(planned.chunks["header"][a:b].tolist(), planned.chunks["end"][a:b].tolist(), strict=True))
        alone = coalesce(ranges, max(max_gap, int(planned.needed[k]) // 2))
        mine = planned.ranges[planned.range_bounds[k]:planned.range_bounds[k + 1]]
        assert [tuple(r) for r in mine.tolist()] == list(alone.ranges)
        assert [tuple(w) for w in planned.where[a:b].tolist()] == list(alone.where)
        pieces += len(alone.ranges)
    assert (pieces > len(first)) == (max_gap < 1 << 16)  # several ranges in some units, unless gaps are wide


def test_the_kernel_refuses_spans_past_an_array(small_units):
    """Spans come from a checked index and never pass an array's chunks; were one to, the kernel (which reads the
    chunk table unchecked) stops instead of reading past it."""
    selection = SELECTIONS["jets only"]
    shard = small_units.manifest.shards[0]
    reader = small_units.source.reader(shard)
    rule = reader._rule(selection)
    last = len(reader.index.arrays["jets/jet_pt"].offsets)
    begins, ends = rule.spans(np.array([last - 1]), np.array([last]))
    assert unit_chunks(reader.index.table, rule, begins, ends, 0).bounds.tolist() == [0, 1]
    with pytest.raises(ValueError, match="reach past"):
        unit_chunks(reader.index.table, rule, begins, ends + 1, 0)
    with pytest.raises(ValueError, match="reach past"):
        unit_chunks(reader.index.table, rule, begins - last, ends, 0)
