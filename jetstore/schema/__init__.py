"""Schemas: what a jet library (ROOT, Parquet or HDF5 files) holds and how it is stored."""

from jetstore.schema.expression import Expression
from jetstore.schema.load import load_schema, schema_from_dict
from jetstore.schema.model import Block, Column, Link, Schema

__all__ = ["Block", "Column", "Expression", "Link", "Schema", "load_schema", "schema_from_dict"]
