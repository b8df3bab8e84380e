"""A dask-awkward collection of a read's jets (for coffea and dask users): one partition per range of whole
units of one shard, read by :class:`ReadPartition`, which reads only the columns a computation needs
(dask-awkward's column projection)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import awkward as ak

from jetstore.arrays.columns import Columns
from jetstore.arrays.fetch import read_spans
from jetstore.arrays.library import empty, gather, to_awkward
from jetstore.arrays.spans import Span
from jetstore.errors import JetstoreError
from jetstore.store.collection import ShardCatalog

if TYPE_CHECKING:
    from jetstore.arrays.jets import Jets

try:
    from dask_awkward.lib.io.columnar import ColumnProjectionMixin
except ImportError:  # dask-awkward is optional: Jets.dask says how to install it
    ColumnProjectionMixin = object


class ReadPartition(ColumnProjectionMixin):
    """Reads one partition (a :class:`Span`) of ``columns`` (small and picklable: sent to Dask workers)."""

    def __init__(self, catalog: ShardCatalog, samples: list[int], columns: Columns):
        self.catalog, self.samples, self.columns = catalog, samples, columns

    @property
    def form(self) -> ak.forms.Form:
        return to_awkward(empty(self.columns), self.columns).layout.form

    behavior: dict | None = None
    attrs: dict | None = None
    use_optimization = True

    def project_columns(self, columns: frozenset[str]) -> ReadPartition:
        return ReadPartition(self.catalog, self.samples, self.columns.subset(columns))

    def __call__(self, span: Span) -> ak.Array:
        parts = [(table, self.samples[span.shard])
                 for _, table in read_spans(self.catalog, self.columns.selection, [span], ahead=1)]
        return to_awkward(gather(parts, self.columns), self.columns)


def collection(jets: Jets, columns: Columns, step_size: int | None) -> Any:
    """The dask-awkward array of ``columns`` of ``jets``, partitioned into unit ranges of about ``step_size``."""
    try:
        import dask_awkward as dak
    except ImportError:
        raise JetstoreError("Jets.dask needs dask-awkward: pip install dask-awkward") from None
    spans = jets.entries.partitions(step_size)
    divisions = (*(int(jets.entries.starts[s.shard]) + s.start for s in spans), jets.num_entries)
    reader = ReadPartition(jets.catalog, jets.sample_of_shard, columns)
    return dak.from_map(reader, spans, label="jetstore", divisions=divisions if spans else None)
