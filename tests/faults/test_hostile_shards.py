"""Hostile datasets: shards crafted to be internally consistent (the zip rebuilt with valid CRCs, the shard's
checksums and the manifest re-sealed, as a colleague handing over a dataset URL could) while their metadata
lies about sizes. Every read path (``Dataset.read_shard``, which the stats passes use; ``verify``; the
sampler's per-unit plan / fetch / decode) gives one :class:`DatasetError` naming the shard or reads a
consistent table: never a crash, never memory read past a chunk, never an allocation beyond a bound."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jetstore.dataset.dataset import Dataset
from jetstore.errors import DatasetError
from jetstore.io.checksum import combined_checksum
from jetstore.model.layout import Layout
from tests.helpers import cli, run_convert

MEMORY_BOUND = 96 << 20  # the sample shard decodes to ~5 MB; a hostile one may take no more than this
FIELDS = {"nbytes": 4, "blocksize": 8, "cbytes": 12}  # Blosc header: offsets of its 32-bit sizes


@pytest.fixture(scope="module")
def originals(dask_client, sample_files, tmp_path_factory):
    """One-shard datasets (several units) in both formats."""
    out = {}
    for fmt in ("zarr", "parquet"):
        root = tmp_path_factory.mktemp("hostile") / f"ds.{fmt}"
        report = run_convert(dask_client, sample_files[:1], root, fmt, jets_per_shard=5000,
                             layout=Layout(chunk_jets=256, chunk_values=4096))
        assert report.ok and len(report.manifest.shards) == 1
        out[fmt] = root
    return out


@pytest.fixture
def workspace(originals, tmp_path):
    def copy(fmt: str):
        target = tmp_path / f"{fmt}-copy"
        if not target.exists():
            shutil.copytree(originals[fmt], target)
        return target
    return copy


def members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def build_zip(items: list[tuple[str, bytes]], deflated: frozenset[str] = frozenset()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", allowZip64=True) as archive:
        for name, data in items:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED
            archive.writestr(info, data)
    return buffer.getvalue()


def reseal(root, data: bytes) -> Dataset:
    """Install ``data`` as the dataset's only shard with valid checksums and a re-sealed manifest."""
    dataset = Dataset.open(str(root))
    shard = dataset.manifest.shards[0]
    (root / shard.path).write_bytes(data)
    files = {"": (len(data), xxhash.xxh3_64_hexdigest(data))}
    entry = dataclasses.replace(shard, bytes=len(data), checksum=combined_checksum(files), files=files)
    (root / "_manifest.json").write_text(dataclasses.replace(dataset.manifest, shards=(entry,)).to_json())
    return Dataset.open(str(root))


def read_every_way(dataset: Dataset) -> None:
    """Every read path on the dataset's shard: errors must be DatasetErrors naming it; a table read must be
    consistent with the manifest; memory stays bounded."""
    shard = dataset.manifest.shards[0]
    tracemalloc.start()
    try:
        outcomes = []
        try:
            table = dataset.read_shard(shard)
            assert table.n_jets == shard.n_jets
            for block in table.blocks.values():
                assert (block.counts >= 0).all()
                assert all(len(v) == int(block.counts.sum()) for v in block.features.values())
            outcomes.append(None)
        except DatasetError as exc:
            assert shard.path in str(exc), exc
            outcomes.append(exc)
        problems = dataset.verify(shard)
        assert all(isinstance(p, str) and "\n" not in p for p in problems)
        if outcomes[0] is not None:
            assert problems
        try:  # the sampler: one reader per shard, then plan / fetch per unit, the units decoded as one window
            reader = dataset.source.reader(shard)
            selection = dataset.manifest.columns.select()
            plans = [reader.plan(start, min(start + dataset.unit_jets, shard.n_jets), selection)
                     for start in range(0, shard.n_jets, dataset.unit_jets)]
            window = type(reader).decode_window([(reader, plan, reader.fetch(plan)) for plan in plans]) if plans \
                else None
            assert window is None or window.n_jets == shard.n_jets
            for block in window.blocks.values() if window is not None else ():
                assert (block.counts >= 0).all()
                assert all(len(v) == int(block.counts.sum()) for v in block.features.values())
        except DatasetError as exc:
            assert shard.path in str(exc), exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MiB"


# ---------------------------------------------------------------- Zarr: mutations of a consistent zip


def mutate_blosc(items, index: int, field: str, value: int):
    name, data = items[index]
    data = bytearray(data)
    struct.pack_into("<I", data, FIELDS[field], value)
    return [*items[:index], (name, bytes(data)), *items[index + 1:]]


def mutate_document(items, key: str, change):
    out = []
    for name, data in items:
        if name == key:
            document = json.loads(data)
            change(document)
            data = json.dumps(document).encode()
        out.append((name, data))
    return out


def chunk_indices(items) -> list[int]:
    return [i for i, (name, _) in enumerate(items) if "/c/" in name]


def array_documents(items) -> list[str]:
    return [name for name, data in items if name.endswith("zarr.json") and b'"array"' in data]


KINDS = ("blosc", "truncate", "garbage", "shape", "chunk_shape", "dtype", "root", "deflate", "directory")


@st.composite
def zarr_mutations(draw, items):
    """A mutation of the original shard, as a short description (applied by :func:`apply`)."""
    chunks, documents = chunk_indices(items), array_documents(items)
    kind = draw(st.sampled_from(KINDS))
    if kind == "blosc":
        value = draw(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 15, 16, 65536 * 4, 2**26 * 4])))
        return kind, draw(st.sampled_from(chunks)), draw(st.sampled_from(sorted(FIELDS))), value
    if kind == "truncate":
        return kind, draw(st.sampled_from(chunks)), draw(st.floats(0, 1)), draw(st.binary(max_size=64))
    if kind == "garbage":
        return kind, draw(st.sampled_from(chunks)), draw(st.floats(0, 1)), draw(st.binary(min_size=1, max_size=8))
    if kind in ("shape", "chunk_shape", "dtype"):
        value = {"shape": st.integers(0, 10**12), "chunk_shape": st.integers(-1, 10**9),
                 "dtype": st.sampled_from(["float64", "int8", "uint64", "bool", "int32"])}[kind]
        return kind, draw(st.sampled_from(documents)), draw(value)
    if kind == "root":
        field = draw(st.sampled_from(["n_jets", "unit_jets", "unit_offsets", "offsets_list"]))
        return kind, field, draw(st.integers(-10**6, 10**9))
    if kind == "deflate":
        return kind, draw(st.sampled_from([*documents, "zarr.json"]))
    return kind, draw(st.integers(0, 10**6)), draw(st.sampled_from([20, 24, 42])), draw(st.integers(0, 2**32 - 1))


def apply(items, mutation) -> bytes:
    kind, *args = mutation
    if kind == "blosc":
        index, field, value = args
        return build_zip(mutate_blosc(items, index, field, value))
    if kind in ("truncate", "garbage"):
        index, where, extra = args
        name, data = items[index]
        position = int(where * len(data))
        data = data[:position] + extra if kind == "truncate" else \
            data[:max(16, position)] + extra + data[max(16, position) + len(extra):]
        return build_zip([*items[:index], (name, data), *items[index + 1:]])
    if kind in ("shape", "chunk_shape", "dtype"):
        key, new = args

        def change(document):
            if kind == "shape":
                document["shape"] = [new]
            elif kind == "chunk_shape":
                document["chunk_grid"]["configuration"]["chunk_shape"] = [new]
            else:
                document["data_type"] = new
        return build_zip(mutate_document(items, key, change))
    if kind == "root":
        field, delta = args

        def change(document):
            attributes = document["attributes"]
            if field in ("n_jets", "unit_jets"):
                attributes[field] = max(0, attributes[field] + delta)
            else:
                block = next(iter(attributes["unit_offsets"]))
                offsets = attributes["unit_offsets"][block]
                if field == "offsets_list":
                    attributes["unit_offsets"][block] = offsets[: abs(delta) % (len(offsets) + 1)]
                else:
                    offsets[abs(delta) % len(offsets)] += delta
        return build_zip(mutate_document(items, "zarr.json", change))
    if kind == "deflate":  # a zarr.json stored deflated, padded to decompress to 8 MiB
        (key,) = args
        padded = [(n, d + b" " * (8 << 20) if n == key else d) for n, d in items]
        return build_zip(padded, deflated=frozenset({key}))
    # directory: the central directory's sizes or offsets of one entry rewritten (the data's CRCs intact)
    which, field, value = args  # field: compressed size, uncompressed size, local header offset
    data = bytearray(build_zip(items))
    headers = [i for i in range(len(data) - 4) if data[i:i + 4] == b"PK\x01\x02"]
    struct.pack_into("<I", data, headers[which % len(headers)] + field, value)
    return bytes(data)


FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def original_shard(root) -> bytes:
    """The shard as converted (kept beside the copy the examples rewrite)."""
    kept = root.parent / f"{root.name}.original"
    if not kept.exists():
        kept.write_bytes((root / Dataset.open(str(root)).manifest.shards[0].path).read_bytes())
    return kept.read_bytes()


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_hostile_zarr_shards_give_one_clear_error(workspace, data):
    root = workspace("zarr")
    items = members(original_shard(root))
    read_every_way(reseal(root, apply(items, data.draw(zarr_mutations(items)))))


# ---------------------------------------------------------------- Parquet: footers rewritten byte by byte


@FUZZ
@given(data=st.data())
def test_hostile_parquet_footers_give_one_clear_error(workspace, data):
    root = workspace("parquet")
    shard = bytearray(original_shard(root))
    footer = struct.unpack("<I", shard[-8:-4])[0]
    kind = data.draw(st.sampled_from(["bytes", "length"]))
    if kind == "bytes":  # thrift fields of the footer: row counts, offsets, sizes, types
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(len(shard) - 8 - footer, len(shard) - 9))
            shard[position] = data.draw(st.integers(0, 255))
    else:
        struct.pack_into("<I", shard, len(shard) - 8, data.draw(st.integers(0, 2**32 - 1)))
    read_every_way(reseal(root, bytes(shard)))


# ---------------------------------------------------------------- the cases reported, through the CLI


def blosc_chunk(values: np.ndarray) -> bytes:
    from numcodecs import Blosc

    return Blosc(cname="zstd", clevel=1, shuffle=Blosc.SHUFFLE).encode(values)


@pytest.mark.parametrize("claimed", [65_536, 64 << 20])
def test_a_chunk_claiming_more_than_it_holds_is_refused(workspace, claimed):
    """Was: a segfault in every reader (64M values), or values read from process memory past the chunk
    (65,536 values) with `verify` passing."""
    root = workspace("zarr")
    items = members((root / Dataset.open(str(root)).manifest.shards[0].path).read_bytes())
    index = next(i for i, (name, _) in enumerate(items) if name.startswith("jets/jet_pt/c/"))
    items = mutate_blosc(items, index, "nbytes", claimed * 4)
    dataset = reseal(root, build_zip(items))
    result = cli("verify", str(root))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{dataset.manifest.shards[0].path} is damaged (chunk jets/jet_pt/c/0 has a Blosc header whose sizes " \
           "do not fit the chunk)" in result.stderr
    assert result.stdout.strip() == "0 of 1 shard(s) verified"


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d.update(shape=[500_000_000], chunk_grid={"name": "regular",
                                                        "configuration": {"chunk_shape": [1]}}), "has shape 500000000"),
    (lambda d: d["chunk_grid"]["configuration"].update(chunk_shape=[0]), "has chunk shape 0"),
])
def test_impossible_shapes_are_refused_without_allocating(workspace, change, fragment):
    root = workspace("zarr")
    items = members((root / Dataset.open(str(root)).manifest.shards[0].path).read_bytes())
    dataset = reseal(root, build_zip(mutate_document(items, "jets/jet_pt/zarr.json", change)))
    with pytest.raises(DatasetError, match=fragment):
        dataset.read_shard(dataset.manifest.shards[0])
    read_every_way(dataset)


def test_a_deflated_metadata_bomb_is_refused(workspace):
    """Was: a 2.7 MB zarr.json deflated from 2 GB, read into memory by `verify`."""
    root = workspace("zarr")
    items = members((root / Dataset.open(str(root)).manifest.shards[0].path).read_bytes())
    bomb = [(n, d + b" " * (64 << 20) if n == "zarr.json" else d) for n, d in items]
    data = build_zip(bomb, deflated=frozenset({"zarr.json"}))
    assert len(data) < 2 << 20
    dataset = reseal(root, data)
    with pytest.raises(DatasetError, match=r"zip entry 'zarr.json' is compressed"):
        dataset.read_shard(dataset.manifest.shards[0])


def test_a_parquet_shard_claiming_gigabytes_of_zeros_is_refused(workspace):
    """Was: a 316 KB Parquet dataset (written by pyarrow, its counts consistent, manifest re-sealed) with one jet of
    6×10⁷ zero particles: `verify` passed at 8 GB RSS, a JetDataset epoch peaked at 12.9 GB. Here 3×10⁶ particles
    (~200 MiB decoded from a few KiB) are refused on every read path before pyarrow allocates them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = workspace("parquet")
    dataset = Dataset.open(str(root))
    shard = dataset.manifest.shards[0]
    schema = pq.read_schema(root / shard.path)
    nodes = 3_000_000
    zeros = {}
    columns = []
    for field in schema:
        kind = field.type
        if pa.types.is_list(kind):
            values = zeros.setdefault(kind, pa.array(np.zeros(nodes, kind.value_type.to_pandas_dtype())))
            columns.append(pa.ListArray.from_arrays(pa.array([0, nodes], pa.int32()), values, type=kind))
        else:
            columns.append(pa.array(np.zeros(1, kind.to_pandas_dtype())))
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(columns, schema=schema), buffer, write_page_checksum=True)
    data = buffer.getvalue()
    assert len(data) < 1 << 20
    blocks = {block.name: nodes for block in dataset.manifest.columns.blocks}
    files = {"": (len(data), xxhash.xxh3_64_hexdigest(data))}
    entry = dataclasses.replace(shard, n_jets=1, class_counts={}, node_counts=blocks, bytes=len(data),
                                checksum=combined_checksum(files), files=files)
    (root / shard.path).write_bytes(data)
    (root / "_manifest.json").write_text(dataclasses.replace(dataset.manifest, shards=(entry,)).to_json())
    hostile = Dataset.open(str(root))
    with pytest.raises(DatasetError, match=r"refused: jets 0-1 would decode to \d+ MiB from \d+ KiB stored"):
        hostile.read_shard(hostile.manifest.shards[0])
    read_every_way(hostile)
    result = cli("verify", str(root))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"shard {shard.path}: refused" in result.stderr
