"""Storage: in-memory jet tables, shard formats, the manifest, and where datasets live (local / S3)."""
