"""Load and validate schema YAML; every error names the key that is wrong."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from jetstore.documents import MAX_YAML_BYTES, DocumentError, load_yaml, read_regular
from jetstore.errors import SchemaError, echo
from jetstore.schema.expression import Expression
from jetstore.schema.model import SORT_BY_LABEL, STORAGE_DTYPES, Block, Column, Link, Schema

SCHEMA_KEYS = ("name", "source", "tree", "collection", "selection", "jets", "labels", "blocks", "sort_by")
COLUMN_KEYS = ("name", "branch", "expr", "dtype")
BLOCK_KEYS = ("features", "link")
ROOT_SOURCE = "root"  # the one input kind with a tree: ``tree`` is required when a schema names it
LINK_KEYS = ("collection", "jet", "node", "indices", "order_by", "ascending")


def load_schema(name_or_path: str | Path) -> Schema:
    """Load and validate a schema: what a jet library holds and how it is stored.

    Parameters
    ----------
    name_or_path
        A YAML file, or the name of a bundled schema (``cms_ak4``, ``jetclass``, ``nano_ak4``, ``nano_ak8``;
        the files in ``schemas/``).

    Returns
    -------
    Schema
        The validated, frozen schema (:class:`~jetstore.schema.model.Schema`).

    Raises
    ------
    SchemaError
        No such file and no bundled schema of that name (the message lists the bundled ones), a file that is not
        readable text or not valid YAML, or content that breaks a rule; the message names the file and the key.
    """
    path = Path(name_or_path)
    if not path.exists() and not path.suffix and path.name == str(name_or_path):
        bundled = resources.files("jetstore.schemas") / f"{path.name}.yaml"
        if bundled.is_file():
            return schema_from_dict(yaml_load(bundled.read_text(), str(name_or_path)), where=str(name_or_path))
        names = sorted(p.name.removesuffix(".yaml") for p in resources.files("jetstore.schemas").iterdir()
                       if p.name.endswith(".yaml"))
        raise SchemaError(f"no schema file '{name_or_path}' and no bundled schema of that name "
                          f"(bundled: {', '.join(names)})")
    return schema_from_dict(read_yaml(path, "schema"), where=str(path))


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file (a regular file: a FIFO or a folder is refused before anything waits on it); unreadable
    files and bad YAML become a :class:`SchemaError` naming the file."""
    path = Path(path)
    try:
        text = read_regular(path, MAX_YAML_BYTES).decode()
    except DocumentError as exc:
        raise SchemaError(f"{what} {path} {exc}") from None
    except OSError as exc:
        raise SchemaError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SchemaError(f"{path}: not a text file; expected {what} YAML") from None
    return yaml_load(text, str(path))


def yaml_load(text: str, where: str) -> Any:
    """Safe YAML without aliases, nested at most ``documents.MAX_DEPTH`` levels, and without echoing file
    contents in errors."""
    try:
        return load_yaml(text)
    except DocumentError as exc:
        raise SchemaError(f"{where}: {exc}") from None


def schema_from_dict(data: Any, where: str = "schema") -> Schema:
    """Build a :class:`Schema` from plain data, validating every key."""
    mapping = _mapping(data, where)
    check_keys(mapping, SCHEMA_KEYS, where)
    source = _source(mapping["source"], f"{where}: source") if "source" in mapping else None
    for key in ("jets", "labels", "tree") if source == ROOT_SOURCE else ("jets", "labels"):
        if key not in mapping:
            raise SchemaError(f"{where}: missing required key '{key}'")
    selection = mapping.get("selection")
    collection = _string(mapping["collection"], f"{where}: collection") if "collection" in mapping else None
    jets = _columns(mapping["jets"], f"{where}: jets")
    labels = _columns(mapping["labels"], f"{where}: labels")
    blocks_data = _mapping(mapping.get("blocks") or {}, f"{where}: blocks")
    blocks = []
    for block_name, block_data in blocks_data.items():
        block_where = f"{where}: blocks.{block_name}"
        block_map = _mapping(block_data, block_where)
        check_keys(block_map, BLOCK_KEYS, block_where)
        features = _columns(block_map.get("features"), f"{block_where}.features", default_dtype="float32")
        if not features:
            raise SchemaError(f"{block_where}.features: a block needs at least one feature")
        link = _link(block_map["link"], f"{block_where}.link") if "link" in block_map else None
        if (link is None) != (collection is None):
            raise SchemaError(f"{block_where}: " + ("a per-event schema (with 'collection') needs a 'link' for every "
                                                    "block" if link is None else "'link' needs a top-level "
                                                    "'collection' (the jet collection, e.g. Jet)"))
        blocks.append(Block(name=_identifier(block_name, block_where), features=features, link=link))
    sort_by = mapping.get("sort_by") or []
    if not isinstance(sort_by, list) or not all(isinstance(k, str) for k in sort_by):
        raise SchemaError(f"{where}: sort_by must be a list of 'label' and jet column names")
    schema = Schema(
        name=str(mapping.get("name", "dataset")),
        sort_by=tuple(sort_by),
        tree=_string(mapping["tree"], f"{where}: tree") if "tree" in mapping else None,
        jets=jets,
        labels=labels,
        blocks=tuple(blocks),
        selection=Expression.parse(selection, f"{where}: selection") if selection is not None else None,
        collection=collection,
        source=source,
    )
    _check_unique(schema, where)
    if collection:
        _check_collections(schema, where)
    jet_names = {c.name for c in schema.jet_columns}
    for key in schema.sort_by:
        if key != SORT_BY_LABEL and key not in jet_names:
            raise SchemaError(f"{where}: sort_by: {echo(key)} is neither 'label' nor a jet column")
        if key == SORT_BY_LABEL and not schema.labels:
            raise SchemaError(f"{where}: sort_by: 'label' needs labels")
    return schema


def check_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Reject unknown keys, suggesting the closest allowed one."""
    allowed = tuple(allowed)
    for key in mapping:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: {', '.join(allowed)})"
            raise SchemaError(f"{where}: unknown key {echo(key)}{suggestion}")


def _columns(data: Any, where: str, default_dtype: str | None = None) -> tuple[Column, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise SchemaError(f"{where}: expected a list of columns, got {type(data).__name__}")
    return tuple(_column(item, f"{where}[{i}]", default_dtype) for i, item in enumerate(data))


def _column(data: Any, where: str, default_dtype: str | None) -> Column:
    if isinstance(data, str):
        return Column(name=_identifier(data, where), dtype=default_dtype, branch=data)
    mapping = _mapping(data, where)
    check_keys(mapping, COLUMN_KEYS, where)
    if "name" not in mapping:
        raise SchemaError(f"{where}: missing required key 'name'")
    name = _identifier(mapping["name"], where)
    where = f"{where} ({name})"
    if "branch" in mapping and "expr" in mapping:
        raise SchemaError(f"{where}: give either 'branch' or 'expr', not both")
    dtype = mapping.get("dtype", default_dtype)
    if dtype is not None and dtype not in STORAGE_DTYPES:
        raise SchemaError(f"{where}: dtype {echo(dtype)} is not one of {', '.join(sorted(STORAGE_DTYPES))}")
    if "expr" in mapping:
        expr = Expression.parse(mapping["expr"], f"{where}.expr")
        return Column(name=name, dtype=dtype or "float32", expr=expr)
    return Column(name=name, dtype=dtype, branch=_string(mapping.get("branch", name), f"{where}.branch"))


def _link(data: Any, where: str) -> Link:
    mapping = _mapping(data, where)
    check_keys(mapping, LINK_KEYS, where)
    if "collection" not in mapping:
        raise SchemaError(f"{where}: missing required key 'collection' (the node collection, e.g. PFCands)")
    table = "jet" in mapping or "node" in mapping
    indices = mapping.get("indices") or []
    if table == bool(indices) or (table and not ("jet" in mapping and "node" in mapping)):
        raise SchemaError(f"{where}: give either a link table ('jet' and 'node' index branches) or 'indices' "
                          "(per-jet index branches)")
    if not isinstance(indices, list) or not all(isinstance(i, str) and i for i in indices):
        raise SchemaError(f"{where}.indices: expected a list of branch names")
    ascending = mapping.get("ascending", False)
    if not isinstance(ascending, bool):
        raise SchemaError(f"{where}.ascending: expected true or false, got {echo(ascending)}")
    return Link(collection=_string(mapping["collection"], f"{where}.collection"),
                jet=_string(mapping["jet"], f"{where}.jet") if table else None,
                node=_string(mapping["node"], f"{where}.node") if table else None,
                indices=tuple(indices),
                order_by=_string(mapping["order_by"], f"{where}.order_by") if "order_by" in mapping else None,
                ascending=ascending)


def _check_collections(schema: Schema, where: str) -> None:
    """Per-event schemas: each node collection and link table feeds one block (a branch has one node order)."""
    owners: dict[str, str] = {}
    for block in schema.blocks:
        assert block.link is not None
        for prefix in filter(None, (block.link.collection, block.link.table)):
            if prefix == schema.collection:
                raise SchemaError(f"{where}: block '{block.name}' reads the jet collection '{prefix}' as nodes")
            if prefix in owners:
                raise SchemaError(f"{where}: blocks '{owners[prefix]}' and '{block.name}' both read '{prefix}'; "
                                  "a collection can feed one block")
            owners[prefix] = block.name


RESERVED = {"counts": "a block's nodes per jet", "starts": "where a jet's nodes start",
            "jets": "the group of jet columns", "_sample_": "the sample a jet belongs to"}  # names the stores use


def _check_unique(schema: Schema, where: str) -> None:
    seen: set[str] = set()
    names = [c.name for c in schema.jet_columns]
    names += [f.name for block in schema.blocks for f in block.features]
    names += [b.name for b in schema.blocks]
    for name in names:
        if name in RESERVED:
            raise SchemaError(f"{where}: the name '{name}' is reserved ({RESERVED[name]}); choose another")
        if name in seen:
            raise SchemaError(f"{where}: the name '{name}' is used twice")
        seen.add(name)


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise SchemaError(f"{where}: expected a mapping, got {type(data).__name__}")
    return data


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{where}: expected a non-empty string, got {echo(value)}")
    return value


def _source(value: Any, where: str) -> str:
    """An input kind's name (``root``, ``parquet``, ``hdf5``; the conversion checks it is a known one)."""
    value = _string(value, where)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
        raise SchemaError(f"{where}: {echo(value)} is not an input kind name (root, parquet, hdf5)")
    return value


def _identifier(value: Any, where: str) -> str:
    value = _string(value, where)
    if not value.isidentifier():
        raise SchemaError(f"{where}: {echo(value)} is not a valid column name (letters, digits, underscores)")
    return value
