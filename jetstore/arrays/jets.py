"""``jetstore.open``: the jets of one or several datasets (local or on S3) as arrays, uproot's way.

::

    jets = jetstore.open("s3://bucket/ak4.zarr")           # or ["hbb:/data/hbb.zarr", "qcd:/data/qcd.zarr"]
    jets.arrays(["jet_pt", "jet_pfcand_pt_log", "_sample_"], entry_stop=10_000)   # awkward: one record per jet
    for chunk in jets.iterate(["jet_pt", "label_b"], step_size=100_000, library="np"): ...
    collection = jets.dask(["jet_pt", "jet_pfcand_pt_log"])  # dask-awkward, one partition per unit range

Entries are numbered across the datasets and their shards in manifest order (as ``uproot.concatenate`` numbers
several files' entries). Columns are the stored jet-level columns (labels and ``_entry``/``_input`` too),
node-level features (a list per jet) and ``_sample_`` (each jet's sample: an index into :attr:`Jets.samples`).
Shards are read by exact byte ranges, their bytes fetched ahead on I/O threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jetstore.arrays.columns import Columns, every_column, resolve
from jetstore.arrays.fetch import read_spans
from jetstore.arrays.library import converter, gather
from jetstore.arrays.spans import Entries
from jetstore.errors import JetstoreError
from jetstore.store.collection import Collection, DataSpec, ShardCatalog

DEFAULT_STEP = 100_000


class Jets:
    """The jets of one or several datasets, read as arrays. Open with :func:`jetstore.open`."""

    def __init__(self, collection: Collection):
        self.collection = collection
        self.catalog = ShardCatalog.of(collection)
        members = [int(m) for m in self.catalog.member]
        self.entries = Entries.of([s.n_jets for s in self.catalog.shards],
                                  [collection.members[m].dataset.unit_jets for m in members])
        self.sample_of_shard = [collection.sample_of(m) for m in members]

    @property
    def num_entries(self) -> int:
        """How many jets (all datasets)."""
        return self.entries.total

    def __len__(self) -> int:
        return self.num_entries

    @property
    def samples(self) -> tuple[str, ...]:
        """The sample names, indexed by the ``_sample_`` column."""
        return self.collection.samples

    def keys(self) -> tuple[str, ...]:
        """Every column: jet-level, node-level (per block), then ``_sample_``."""
        return every_column(self.collection.members[0].dataset.manifest.columns)

    def __repr__(self) -> str:
        return f"<jetstore.Jets {self.collection.url}: {self.num_entries:,} jets, samples {', '.join(self.samples)}>"

    def columns(self, names: str | Iterable[str] | None = None) -> Columns:
        """The columns ``names`` (None: every column), checked against every dataset."""
        return resolve(names, [(m.url, m.dataset.manifest.columns) for m in self.collection])

    def arrays(self, columns: str | Iterable[str] | None = None, entry_start: int | None = None,
               entry_stop: int | None = None, library: str = "ak") -> Any:
        """The jets ``[entry_start, entry_stop)`` of ``columns``.

        Parameters
        ----------
        columns
            Column names (a name, or None: every column): stored jet-level columns, node features, ``_sample_``.
        entry_start, entry_stop
            The first and one-past-last jet, counted over all the datasets; None for the ends, negative from the
            end (as uproot and Python slices).
        library
            ``"ak"`` (an awkward array, one record per jet, node features as lists), ``"np"`` (a dict of numpy
            arrays; a node feature an object array of one array per jet) or ``"pd"`` (a pandas DataFrame, one row
            per jet, node features as lists).

        Raises
        ------
        DatasetError
            An unknown column (the message suggests close names), a column the datasets store differently, or
            a shard that is missing or damaged.
        StorageError
            The storage cannot be read.
        """
        convert = converter(library)
        selected = self.columns(columns)
        start, stop = self.entries.bounded(entry_start, entry_stop)
        parts = [(table, self.sample_of_shard[span.shard])
                 for span, table in read_spans(self.catalog, selected.selection, self.entries.spans(start, stop))]
        return convert(gather(parts, selected), selected)

    def iterate(self, columns: str | Iterable[str] | None = None, step_size: int = DEFAULT_STEP,
                entry_start: int | None = None, entry_stop: int | None = None, library: str = "ak") -> Iterator[Any]:
        """The jets in steps of ``step_size`` (the last one shorter), as :meth:`arrays` gives them; a step may
        span shards and datasets."""
        if not isinstance(step_size, int) or isinstance(step_size, bool) or step_size <= 0:
            raise JetstoreError(f"step_size must be a positive number of jets, not {step_size!r}")
        convert = converter(library)
        selected = self.columns(columns)
        start, stop = self.entries.bounded(entry_start, entry_stop)
        spans = [piece for begin in range(start, stop, step_size)
                 for piece in self.entries.spans(begin, min(stop, begin + step_size))]
        step, parts, held = start, [], 0
        for span, table in read_spans(self.catalog, selected.selection, spans):
            parts.append((table, self.sample_of_shard[span.shard]))
            held += table.n_jets
            if held == min(step_size, stop - step):
                yield convert(gather(parts, selected), selected)
                step, parts, held = step + held, [], 0

    def dask(self, columns: str | Iterable[str] | None = None, step_size: int | None = None) -> Any:
        """A dask-awkward array of the jets, one partition per range of whole units of a shard (about ``step_size``
        jets; None: a shard each); only the columns a computation uses are read. Needs ``dask-awkward``
        (``pip install dask-awkward``; coffea brings it)."""
        from jetstore.arrays.partitions import collection

        return collection(self, self.columns(columns), step_size)


def open(data: DataSpec | Collection, storage_options: Mapping[str, Any] | None = None) -> Jets:
    """Open one or several datasets (local or on S3) to read their jets as arrays.

    Parameters
    ----------
    data
        A dataset URL, ``NAME:URL``, a list of them, a mapping sample name → URL, opened datasets, or a
        :class:`~jetstore.store.collection.Collection` (see :meth:`Collection.open`): several datasets are read
        one after the other, each jet knowing its sample (``_sample_``).
    storage_options
        fsspec storage options (endpoint, credentials); default: the ``AWS_*`` environment variables.

    Returns
    -------
    Jets
        With :meth:`~Jets.arrays`, :meth:`~Jets.iterate` and :meth:`~Jets.dask`.
    """
    return Jets(Collection.open(data, storage_options))
