"""The node-local shard cache (jetstore.cache): reads through it equal reads from storage, later epochs read
nothing from storage, one download per node, never a stale or damaged byte served, eviction under a limit, a
full disk, and ``jetstore cache ls|clear``. On local disk, moto and a real Ceph RGW."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import s3fs
import torch

from jetstore import JetDataset
from jetstore.cache import DiskCache, ObjectKey, parse_size
from jetstore.cache.extents import DamagedLog, Extents, record
from jetstore.cli import main
from jetstore.dataset.dataset import Dataset
from jetstore.errors import SchemaError
from jetstore.io.backend import open_backend
from tests.helpers import REPO, config_with_stats, forget_shard_metadata, run_convert
from tests.proxy import LatencyProxy

CONFIG = REPO / "tests/fixtures/weaver_cms_ak4.yaml"


@pytest.fixture(scope="module")
def local(dask_client, sample_files, tmp_path_factory) -> Dataset:
    """The bundled sample in 5 Zarr shards, with stats for tests/fixtures/weaver_cms_ak4.yaml."""
    out = tmp_path_factory.mktemp("cache") / "sample.zarr"
    assert run_convert(dask_client, sample_files, out, jets_per_shard=600).ok
    config_with_stats(str(out), out.parent / "config.yaml", dask_client, lambda data: None)
    return Dataset.open(str(out))


@pytest.fixture(scope="module", params=["moto", "ceph"])
def remote(request, local):
    """The dataset on moto or Ceph RGW, reached through a proxy that counts bytes (no added latency):
    (URL, storage options, proxy)."""
    server = request.getfixturevalue("moto_server") if request.param == "moto" else \
        request.getfixturevalue("ceph_rgw")["http"]
    bucket = f"cache-{request.param}"
    server.make_bucket(bucket)
    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint, key=server.key, secret=server.secret)
    fs.put(local.root + "/", f"{bucket}/sample.zarr/", recursive=True)
    host, port = server.endpoint.removeprefix("http://").split(":")
    with LatencyProxy((host, int(port)), latency=0.0) as proxy:
        yield f"s3://{bucket}/sample.zarr", {"endpoint_url": proxy.url, "key": server.key,
                                             "secret": server.secret}, proxy


def cached(dataset: Dataset, cache: DiskCache):
    return dataclasses.replace(dataset.source, cache=cache)


def tables_equal(a, b) -> None:
    assert a.n_jets == b.n_jets
    for name in a.jets:
        np.testing.assert_array_equal(a.jets[name], b.jets[name], err_msg=name)
    for block, data in a.blocks.items():
        np.testing.assert_array_equal(data.counts, b.blocks[block].counts)
        for name, values in data.features.items():
            np.testing.assert_array_equal(values, b.blocks[block].features[name], err_msg=name)


def read_all(source, dataset: Dataset) -> list:
    return [source.read(shard) for shard in dataset.manifest.shards]


def epochs(url, cache_dir=None, options=None, n=2, **kwargs) -> list[list[dict]]:
    ds = JetDataset(url, str(CONFIG), batch_size=128, seed=4, cache_dir=cache_dir, storage_options=options,
                    **kwargs)
    out = []
    for epoch in range(n):
        ds.set_epoch(epoch)
        out.append(list(ds))
    return out


def same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            torch.testing.assert_close(x[key], y[key], rtol=0, atol=0, msg=key)


# ---------------------------------------------------------------- parts


def test_extent_log_replays_appends_and_refuses_damage(tmp_path):
    log = tmp_path / "extents"
    log.write_bytes(record(100, 200, 7) + record(0, 50, 5))
    extents = Extents()
    descriptor = os.open(log, os.O_RDONLY)
    try:
        extents.refresh(descriptor)
        assert extents.starts == [0, 100] and extents.held == 150
        assert extents.covering(10, 150) is None and extents.covering(100, 150) == [(100, 200, 7)]
        assert extents.gaps([(20, 120), (180, 260)]) == [(50, 100), (200, 260)]
        with open(log, "ab") as handle:
            handle.write(record(50, 100, 6))
        extents.refresh(descriptor)  # only the new record is read
        assert extents.covering(10, 150) == [(0, 50, 5), (50, 100, 6), (100, 200, 7)]
        with open(log, "ab") as handle:
            handle.write(record(300, 400, 1)[:20])  # cut short by a crash
        with pytest.raises(DamagedLog):
            extents.refresh(descriptor)
    finally:
        os.close(descriptor)


def test_cache_limit_sizes():
    assert parse_size("500G") == 500 * 10**9 and parse_size("2Ti") == 2 * 2**40
    assert parse_size("1.5GiB") == int(1.5 * 2**30) and parse_size(4096) == 4096 and parse_size(None) is None
    for bad in ("lots", "-1G", "0", True, 0):
        with pytest.raises(SchemaError, match="cache_limit"):
            parse_size(bad)
    with pytest.raises(SchemaError, match="cache_limit"):
        JetDataset("unused", str(CONFIG), batch_size=1, cache_limit="10 parsecs")


# ---------------------------------------------------------------- reading through the cache


def test_reads_through_the_cache_equal_storage_and_are_kept_whole(local, tmp_path):
    cache = DiskCache.open(str(tmp_path / "cache"))
    direct = read_all(local.source, local)
    forget_shard_metadata()
    for table, expected in zip(read_all(cached(local, cache), local), direct, strict=True):
        tables_equal(table, expected)
    cache.store().settle()
    counters = cache.store().counters
    assert counters.fetched_bytes == counters.written_bytes == local.manifest.bytes  # every byte once
    entries = cache.store().entries()
    assert len(entries) == len(local.manifest.shards) and all(e.verified for e in entries)
    forget_shard_metadata()
    for table, expected in zip(read_all(cached(local, cache), local), direct, strict=True):
        tables_equal(table, expected)
    assert counters.fetched_bytes == local.manifest.bytes and counters.hit_bytes > 0.8 * local.manifest.bytes


def test_later_epochs_read_nothing_from_storage(remote, tmp_path):
    url, options, proxy = remote
    expected = epochs(url, options=options, training=False)
    forget_shard_metadata()
    proxy.reset()
    ds = JetDataset(url, str(CONFIG), batch_size=128, seed=4, cache_dir=str(tmp_path), storage_options=options,
                    training=False)
    first = list(ds)
    ds.spec.catalog.sources[0].cache.store().settle()
    assert proxy.bytes_down > 0
    proxy.reset()
    ds.set_epoch(1)
    second = list(ds)
    assert (proxy.requests, proxy.bytes_down) == (0, 0)
    same_batches(first, expected[0])
    same_batches(second, expected[1])


def test_a_changed_object_is_never_served_from_the_cache(local, tmp_path):
    """The same path with other content (a rewrite in place: the manifest's checksum changes) is a new entry,
    and two datasets sharing the cache keep their own entries."""
    path = tmp_path / "objects" / "shard.bin"
    path.parent.mkdir()
    shard = local.manifest.shards[0]
    backend = open_backend(str(path.parent))
    cache = DiskCache.open(str(tmp_path / "cache"))

    def read(content: bytes, checksum: str, url: str = str(path.parent)) -> list[bytes]:
        entry = dataclasses.replace(shard, path="shard.bin", checksum=checksum, files={"": (len(content), "")})
        return cache.reader(backend.ranges("shard.bin", len(content)), url, None, entry).fetch([(0, 4), (8, 16)])

    path.write_bytes(b"0123456789abcdef")
    assert read(b"0123456789abcdef", "v1") == [b"0123", b"89abcdef"]
    path.write_bytes(b"ABCDEFGHIJKLMNOP")  # rewritten in place
    assert read(b"ABCDEFGHIJKLMNOP", "v2") == [b"ABCD", b"IJKLMNOP"]
    assert read(b"ABCDEFGHIJKLMNOP", "v1") == [b"0123", b"89abcdef"]  # the old version still cached as itself
    other = tmp_path / "other"
    other.mkdir()
    (other / "shard.bin").write_bytes(b"abcdefghijklmnop")
    backend = open_backend(str(other))
    assert read(b"abcdefghijklmnop", "v1", str(other)) == [b"abcd", b"ijklmnop"]  # same name and checksum
    assert {e.key.dataset for e in cache.store().entries()} == {str(path.parent), str(other)}
    assert len({ObjectKey.of(str(d), None, shard).name for d in (path.parent, other)}) == 2


@pytest.mark.slow
def test_stale_after_append(dask_client, sample_files, moto_server, tmp_path):
    """A dataset cached, then appended to: every read through the cache equals a read from storage, the old
    shards' entries serve the new manifest's old shards."""
    moto_server.make_bucket("cache-stale")
    url, options = "s3://cache-stale/ds.zarr", moto_server.options
    cache = DiskCache.open(str(tmp_path / "cache"))

    def check() -> None:
        dataset = Dataset.open(url, options)
        direct = read_all(dataset.source, dataset)
        forget_shard_metadata()
        for table, expected in zip(read_all(cached(dataset, cache), dataset), direct, strict=True):
            tables_equal(table, expected)
        cache.store().settle()

    assert run_convert(dask_client, sample_files[:1], url, options=options, jets_per_shard=600).ok
    check()
    fetched = cache.store().counters.fetched_bytes
    assert run_convert(dask_client, sample_files[1:], url, options=options, jets_per_shard=600, append=True).ok
    check()
    added = sum(s.bytes for s in Dataset.open(url, options).manifest.shards) - fetched
    assert cache.store().counters.fetched_bytes - fetched == added  # only the new shards were fetched


# ---------------------------------------------------------------- damage, limits, a full disk


def test_a_damaged_cache_file_is_dropped_and_read_again(remote, local, tmp_path, caplog):
    url, options, _ = remote
    dataset = Dataset.open(url, options)
    cache = DiskCache.open(str(tmp_path / "cache"))
    expected = read_all(local.source, local)
    forget_shard_metadata()
    read_all(cached(dataset, cache), dataset)
    store = cache.store()
    store.settle()
    names = [ObjectKey.of(url, options, shard).name for shard in dataset.manifest.shards]
    with open(store.path(names[0], "data"), "r+b") as handle:  # one bit flipped on disk
        handle.seek(5000)
        byte = handle.read(1)
        handle.seek(5000)
        handle.write(bytes([byte[0] ^ 1]))
    with open(store.path(names[1], "extents"), "ab") as handle:  # a crash cut a record short
        handle.write(b"\0" * 7)
    forget_shard_metadata()
    with caplog.at_level(logging.WARNING, logger="jetstore.cache"):
        for table, reference in zip(read_all(cached(dataset, cache), dataset), expected, strict=True):
            tables_equal(table, reference)
        store.settle()
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 2 and store.counters.dropped == 2, dropped
    assert "do not match the digest" in dropped[0] and "list of cached ranges is damaged" in dropped[1]
    assert all(e.verified for e in store.entries())  # fetched again whole and checked


def test_a_full_cache_disk_streams_with_one_warning(remote, local, tmp_path, caplog):
    url, options, _ = remote
    dataset = Dataset.open(url, options)
    cache = DiskCache.open(str(tmp_path / "cache"))
    store = cache.store()
    for shard in dataset.manifest.shards:  # every entry's data on a device that is always full
        name = store.ensure(ObjectKey.of(url, options, shard))
        os.unlink(store.path(name, "data"))
        os.symlink("/dev/full", store.path(name, "data"))
    expected = read_all(local.source, local)
    forget_shard_metadata()
    with caplog.at_level(logging.WARNING, logger="jetstore.cache"):
        for _ in range(2):
            for table, reference in zip(read_all(cached(dataset, cache), dataset), expected, strict=True):
                tables_equal(table, reference)
            forget_shard_metadata()
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("jetstore")]
    assert len(warnings) == 1 and "the disk is full" in warnings[0], warnings
    assert store.counters.written_bytes == 0 and store.counters.fetched_bytes >= 2 * 0.9 * local.manifest.bytes


def test_a_cache_smaller_than_an_epoch_keeps_what_it_holds(remote, tmp_path):
    """Half the data fits: the cache fills in the first epoch and then serves the same bytes every epoch,
    evicting nothing (LRU would evict each entry before the next epoch needs it), under its limit; batches are
    unchanged."""
    url, options, proxy = remote
    expected = epochs(url, options=options, n=3, training=False)
    limit = Dataset.open(url, options).manifest.bytes // 2
    forget_shard_metadata()
    ds = JetDataset(url, str(CONFIG), batch_size=128, seed=4, cache_dir=str(tmp_path), cache_limit=limit,
                    storage_options=options, training=False)
    store = ds.spec.catalog.sources[0].cache.store()
    fetched, written = [], []
    for epoch in range(3):
        ds.set_epoch(epoch)
        proxy.reset()
        same_batches(list(ds), expected[epoch])
        store.settle()
        fetched.append(proxy.bytes_down)
        written.append(store.counters.written_bytes)
        assert store.usage() <= limit
    assert written[0] == written[2] > 0.6 * limit, written  # nothing evicted, nothing written again
    assert fetched[1] == fetched[2] < fetched[0] - 0.6 * limit, fetched


def write(store, name: str, size: int) -> None:
    """``size`` bytes at the start of entry ``name``'s data, as a reader writes what it was admitted."""
    with open(store.path(name, "data"), "r+b") as handle:
        handle.write(os.urandom(size))


def keys(directory, n: int) -> list[ObjectKey]:
    return [ObjectKey("local disk", str(directory / "ds"), f"shard{i}", "c", "", 10**6) for i in range(n)]


def test_a_count_of_the_disk_waits_for_the_writes_in_flight(tmp_path):
    """The cache, full, counts its disk again while another thread's admitted bytes are not yet written: they
    stay counted (the count waits for them), so the entries never take more than the limit."""
    store = DiskCache.open(str(tmp_path), 400_000).store()
    first, second = (store.ensure(key) for key in keys(tmp_path, 2))
    admitted, go, outcome = threading.Event(), threading.Event(), []

    def in_flight() -> None:
        with store.admit(first, 200_000) as ok:
            admitted.set()
            go.wait(10)
            write(store, first, 200_000 if ok else 0)

    def evicting() -> None:  # 208 kB counted + 250 kB > the limit: the disk is counted again
        with store.admit(second, 250_000) as ok:
            write(store, second, 250_000 if ok else 0)
        outcome.append(ok)

    threads = [threading.Thread(target=in_flight), threading.Thread(target=evicting)]
    threads[0].start()
    admitted.wait(10)
    threads[1].start()
    threads[1].join(1.0)  # waits for the first write (counted already, without the wait)
    go.set()
    for thread in threads:
        thread.join(10)
    assert outcome == [False] and store.usage() <= 400_000, (outcome, store.usage())


def test_a_full_cache_makes_no_entry(tmp_path):
    """An entry's own files are admitted too: a cache full of this session's bytes makes no new entry."""
    store = DiskCache.open(str(tmp_path), 100_000).store()
    first, second = keys(tmp_path, 2)
    name = store.ensure(first)
    with store.admit(name, 94_208) as ok:  # 23 blocks: with meta.json's, no room for another 4 KiB block
        write(store, name, 94_208)
    assert ok and store.ensure(second) is None
    assert [e.name for e in store.entries()] == [name] and store.usage() <= 100_000


def test_eviction_of_what_an_earlier_session_left(local, tmp_path):
    """A new session evicts the least recently used entries of earlier ones to stay under its limit."""
    directory = str(tmp_path / "cache")
    DiskCache.open(directory)  # made without a limit
    earlier = DiskCache(directory, None, since=time.time())
    read_all(cached(local, earlier), local)
    earlier.store().settle()
    full = earlier.store().usage()
    other = tmp_path / "copy.zarr"  # another dataset (the same bytes at another URL)
    os.symlink(local.root, other)
    copy = Dataset.open(str(other))
    later = DiskCache(directory, int(0.7 * full), since=time.time() + 5)  # after the earlier session's last use
    for table, reference in zip(read_all(cached(copy, later), copy), read_all(local.source, local), strict=True):
        tables_equal(table, reference)
    later.store().settle()
    assert 0.5 * full < later.store().usage() <= 0.7 * full
    assert {e.key.dataset for e in later.store().entries()} == {str(other)}  # the earlier entries went first


# ---------------------------------------------------------------- one download per node


TWO_READERS = """
import json, os, sys, time
import xxhash
from jetstore.cache import DiskCache
from jetstore.io.backend import open_backend
from jetstore.dataset.dataset import Dataset
url, options, directory, since, go = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
dataset = Dataset.open(url, options)
backend = open_backend(url, options)
cache = DiskCache(directory, None, since)
print("ready", flush=True)
while not os.path.exists(go):  # both processes start reading together
    time.sleep(0.01)
digests = []
for shard in dataset.manifest.shards:
    size = shard.files[""][0]
    reader = cache.reader(backend.ranges(shard.path, size), url, options, shard)
    tail = reader.fetch([(size - 4096, size)])  # as a shard reader starts: its tail, then ranges in it
    parts = reader.fetch([(0, size // 3), (size // 3, size - 4096)]) + tail
    digests.append(xxhash.xxh3_64_hexdigest(b"".join(parts)))
cache.store().settle()
print(json.dumps({"fetched": cache.store().counters.fetched_bytes, "digests": digests}))
"""


@pytest.mark.slow
def test_two_processes_fill_one_cache_fetching_each_byte_once(remote, local, tmp_path):
    """Two processes read the same shards at once through one cache (requests take 50 ms, so they overlap):
    every byte is fetched from storage once, and both get the shards' exact bytes."""
    url, options, _ = remote
    host, port = options["endpoint_url"].removeprefix("http://").split(":")
    with LatencyProxy((host, int(port)), latency=0.05) as slow:
        directory, go = str(tmp_path / "cache"), tmp_path / "go"
        DiskCache.open(directory)
        args = [url, json.dumps({**options, "endpoint_url": slow.url}), directory, str(time.time()), str(go)]
        runs = [subprocess.Popen([sys.executable, "-c", TWO_READERS, *args], stdout=subprocess.PIPE, text=True,
                                 cwd=REPO) for _ in range(2)]
        assert [run.stdout.readline() for run in runs] == ["ready\n"] * 2
        go.touch()
        results = [json.loads(run.communicate(timeout=120)[0]) for run in runs]
    expected = [shard.files[""][1] for shard in local.manifest.shards]
    assert all(r["digests"] == expected for r in results)
    total = sum(r["fetched"] for r in results)
    assert total == local.manifest.bytes, (total, local.manifest.bytes)


# ---------------------------------------------------------------- the command lines


def test_the_trainer_reads_through_its_cache_dir(local, tmp_path):
    from jetstore.train.cli import parse_options
    from jetstore.train.loop import build

    options = parse_options(["--data", local.url, "--config", str(CONFIG), "--size", "tiny", "--jets-per-epoch", "512",
                             "--output", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
                             "--cache-limit", "2Gi"])
    run = build(options, torch.device("cpu"))
    for dataset in (run.dataset, run.validation):
        cache = dataset.spec.catalog.sources[0].cache
        assert (cache.directory, cache.limit) == (str(tmp_path / "cache"), 2 * 2**30)


def test_cache_ls_and_clear(local, tmp_path, capsys):
    directory = str(tmp_path / "cache")
    other = tmp_path / "copy.zarr"
    os.symlink(local.root, other)
    cache = DiskCache.open(directory)
    for dataset in (local, Dataset.open(str(other))):
        read_all(cached(dataset, cache), dataset)
        forget_shard_metadata()
    cache.store().settle()

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["cache", *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, shown, _ = run("ls", directory)
    lines = shown.splitlines()
    assert code == 0
    assert any(line.startswith(f"{local.url} (local disk): 5 shard(s)") and "5 complete" in line for line in lines)
    assert any(line.startswith(f"{other} (local disk): 5 shard(s)") for line in lines)
    listed = json.loads(run("ls", directory, "--json")[1])
    assert len(listed) == 10 and {e["dataset"] for e in listed} == {local.url, str(other)}
    code, cleared, _ = run("clear", directory, "--dataset", str(other))
    assert code == 0 and cleared.startswith("deleted 5 shard(s)")
    assert {e.key.dataset for e in cache.store().entries()} == {local.url}
    assert run("clear", directory)[1].startswith("deleted 5 shard(s)")
    assert cache.store().entries() == []
    code, _, error = run("ls", str(tmp_path / "nothing"))
    assert code == 3 and "no jetstore cache there" in error
