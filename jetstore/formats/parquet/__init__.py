"""Parquet shards: one file per shard, a row group per unit."""

from jetstore.store.format.base import Format
from jetstore.store.format.parquet.reader import ParquetShardReader
from jetstore.store.format.parquet.writer import ParquetShardWriter

FORMAT = Format("parquet", ".parquet", ParquetShardWriter, ParquetShardReader)
