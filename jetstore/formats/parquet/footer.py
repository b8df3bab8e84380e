"""The byte ranges of a Parquet footer's column chunks, read with a small bounded Thrift (compact protocol)
decoder instead of pyarrow's metadata objects.

pyarrow's ``RowGroupMetaData.column()`` aborts the whole process (``std::terminate``) on some hostile
footers (e.g. a definition-level histogram of the wrong length); its readers report the same damage as an
error. So jetstore takes what it plans reads with (row counts, every column chunk's offsets and sizes) from
this decoder, whose every length is checked against the bytes that remain, and leaves the pages to
pyarrow's reader. Its value counts bound what a column chunk decodes to before pyarrow allocates it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_DEPTH = 16
STOP, TRUE, FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(13)


class FooterError(ValueError):
    """The footer is not valid compact Thrift."""


@dataclass(frozen=True)
class ColumnChunk:
    name: str  # the top-level column
    begin: int  # dictionary page, else first data page
    compressed: int
    uncompressed: int
    values: int  # values stored (a list column's: its nodes, plus one level entry per empty list)


@dataclass(frozen=True)
class RowGroup:
    rows: int
    columns: tuple[ColumnChunk, ...]


def row_groups(footer: bytes) -> list[RowGroup]:
    """The row groups of a serialized ``FileMetaData``."""
    metadata = _Decoder(footer).struct(0)
    out = []
    for group in _field(metadata, 4, list, []):
        columns = []
        for chunk in _field(group, 1, list, []):
            meta = _field(chunk, 3, dict)
            path = _field(meta, 3, list)
            if not path or not isinstance(path[0], bytes):
                raise FooterError("a column chunk without a path")
            data_page = _field(meta, 9, int)
            begin = meta.get(11) if isinstance(meta.get(11), int) and meta[11] > 0 else data_page
            columns.append(ColumnChunk(path[0].decode("utf-8", "replace"), begin, _field(meta, 7, int),
                                       _field(meta, 6, int), _field(meta, 5, int)))
        out.append(RowGroup(_field(group, 3, int), tuple(columns)))
    return out


def _field(struct_: dict, number: int, kind: type, default=None):
    value = struct_.get(number, default)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FooterError(f"field {number} is missing or of the wrong type")
    return value


class _Decoder:
    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def byte(self) -> int:
        if self.position >= len(self.data):
            raise FooterError("cut short")
        self.position += 1
        return self.data[self.position - 1]

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise FooterError("varint too long")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def take(self, length: int) -> bytes:
        if length < 0 or self.position + length > len(self.data):
            raise FooterError("a length beyond the footer")
        self.position += length
        return self.data[self.position - length:self.position]

    def value(self, kind: int, depth: int):
        if depth > MAX_DEPTH:
            raise FooterError("nested too deeply")
        if kind in (TRUE, FALSE):
            return kind == TRUE
        if kind == BYTE:
            return self.byte()
        if kind in (I16, I32, I64):
            return self.zigzag()
        if kind == DOUBLE:
            return struct.unpack("<d", self.take(8))[0]
        if kind == BINARY:
            return self.take(self.varint())
        if kind in (LIST, SET):
            header = self.byte()
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            if size > len(self.data) - self.position:  # every element takes a byte at least
                raise FooterError("a list longer than the footer")
            if element in (TRUE, FALSE):
                return [self.byte() == 1 for _ in range(size)]
            return [self.value(element, depth + 1) for _ in range(size)]
        if kind == MAP:
            size = self.varint()
            if size == 0:
                return {}
            if 2 * size > len(self.data) - self.position:
                raise FooterError("a map longer than the footer")
            types = self.byte()
            return {self._key(self.value(types >> 4, depth + 1)): self.value(types & 0x0F, depth + 1)
                    for _ in range(size)}
        if kind == STRUCT:
            return self.struct(depth + 1)
        raise FooterError(f"unknown type {kind}")

    def struct(self, depth: int) -> dict:
        fields: dict = {}
        last = 0
        while True:
            header = self.byte()
            kind = header & 0x0F
            if kind == STOP:
                return fields
            delta = header >> 4
            last = last + delta if delta else self.zigzag()
            fields[last] = self.value(kind, depth)

    @staticmethod
    def _key(key):
        return key if isinstance(key, int | bytes | bool | float) else repr(key)
