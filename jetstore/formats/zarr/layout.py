"""The names and shapes inside a Zarr shard, read by its writer, its reader and the dataset's root group: one
home, so the reader never imports the writer.

A shard is a Zarr v3 zip store: group ``jets/`` holds the jet columns (dimension ``jet``); one group per node
block holds its ``counts``, ``starts`` and features (dimension ``<block>_node``).
"""

COUNTS = "counts"
STARTS = "starts"
JETS = "jets"
JET_DIMENSION = "jet"
UNIT_ALIGNED = "unit_aligned"  # the root's value_layout: each unit's node values start at a chunk boundary
CONSOLIDATED = "consolidated_metadata"
NODE_LAYOUT = ("jet i's nodes are values [starts[i], starts[i] + counts[i]) of every node array of this group; "
               "the values after a unit's last jet are padding")


def node_dimension(block: str) -> str:
    return f"{block}_node"
