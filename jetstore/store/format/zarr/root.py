"""A Zarr dataset's root group: ``zarr.open_group(<dataset>)`` opens the dataset, and its attributes list the
shards (each a Zarr v3 zip store) with their jets, so any Zarr reader finds every jet without jetstore::

    root = zarr.open_group("s3://bucket/ak4.zarr", mode="r", storage_options=...)
    for shard in root.attrs["shards"]:          # {"path": "shards/ak4.00000....zarr.zip", "n_jets": ...}
        jets = zarr.open_group(f"zip::s3://bucket/ak4.zarr/{shard['path']}", mode="r", storage_options=...)

It is written with each commit of the manifest (``DatasetWriter``), fenced as the manifest is: it carries the
lease generation that wrote it (``attributes.jetstore.generation``) and never replaces a newer one.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from jetstore.store import paths
from jetstore.store.format.base import RootFiles
from jetstore.store.format.zarr.writer import NODE_LAYOUT

if TYPE_CHECKING:
    from jetstore.store.manifest import Manifest


def root_group(manifest: Manifest) -> dict[str, bytes]:
    """The root ``zarr.json`` of a dataset with ``manifest``."""
    attributes = {
        "jetstore": {"manifest": paths.MANIFEST, "version": manifest.version, "generation": manifest.generation},
        "n_jets": manifest.n_jets,
        "shards": [{"path": shard.path, "n_jets": shard.n_jets} for shard in manifest.shards],
        "columns": manifest.columns.to_dict(),
        "shard_layout": f"a shard is a Zarr v3 zip store: group jets/ holds the jet columns, one group per node "
                        f"block its counts, starts and features; {NODE_LAYOUT}",
    }
    document = {"zarr_format": 3, "node_type": "group", "attributes": attributes}
    return {paths.ROOT_GROUP: json.dumps(document, indent=1).encode()}


def generation(text: bytes) -> int:
    """The lease generation that wrote a root group (0: none said, or unreadable)."""
    try:
        value = json.loads(text)["attributes"]["jetstore"]["generation"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


ROOT = RootFiles((paths.ROOT_GROUP,), root_group, generation)
