"""Reading spans of shards in order, their bytes fetched ahead by I/O threads (what hides object-store
latency) and decoded in the calling thread (the shard readers' decode is the CPU work)."""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Iterator

from jetstore.arrays.spans import Span
from jetstore.store.collection import ShardCatalog
from jetstore.store.layout import Selection
from jetstore.store.table import JetTable

AHEAD = 4  # spans fetched ahead of the one decoded


def read_spans(catalog: ShardCatalog, selection: Selection, spans: list[Span],
               ahead: int = AHEAD) -> Iterator[tuple[Span, JetTable]]:
    """The jets of every span, in order."""
    def fetch(span: Span):
        reader = catalog.reader(span.shard)
        plan = reader.plan(span.start, span.stop, selection)
        return reader, plan, reader.fetch(plan)

    if not spans:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(ahead, len(spans))) as pool:
        queued: collections.deque = collections.deque()
        waiting = iter(spans)
        for span in waiting:
            queued.append((span, pool.submit(fetch, span)))
            if len(queued) > ahead:
                break
        while queued:
            span, future = queued.popleft()
            following = next(waiting, None)
            if following is not None:
                queued.append((following, pool.submit(fetch, following)))
            reader, plan, pieces = future.result()
            yield span, reader.decode(plan, pieces)
