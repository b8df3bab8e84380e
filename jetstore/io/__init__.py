"""Bytes and where they live: URLs, storage options, secrets, failures, filesystems, byte ranges and the
backends of a dataset root."""
