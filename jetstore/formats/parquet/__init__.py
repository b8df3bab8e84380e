"""Parquet shards: one file per shard, a row group per unit."""

from jetstore.formats.base import Format
from jetstore.formats.parquet.reader import ParquetShardReader
from jetstore.formats.parquet.writer import ParquetShardWriter

FORMAT = Format("parquet", ".parquet", ParquetShardWriter, ParquetShardReader)
