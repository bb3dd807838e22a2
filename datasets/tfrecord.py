"""TFRecord framing: a streaming, CRC-checking reader and a writer.

Each record on disk is::

    uint64 length (little endian) | uint32 masked_crc32c(length bytes)
    byte   data[length]           | uint32 masked_crc32c(data)

The reader holds one record in memory at a time, verifies both CRCs by default (google-crc32c, a
C implementation; each record is read with one unbuffered ``read`` into a fresh bytes object, which
is both what the C CRC wants, a read-only buffer, and what protobuf parses, so the payload is
never copied in Python) and refuses lengths above ``max_record_bytes`` or beyond the end of the file
before allocating anything, so a corrupt length cannot make it allocate gigabytes.

Corrupt records and ``skip_corrupt``:

* data CRC mismatch (length CRC fine): the framing is intact, the record is skipped and reading
  goes on at the next header;
* length above the limit (length CRC fine): skipped without being read (seek past it);
* length CRC mismatch or truncation: the length cannot be trusted, and searching for the next
  plausible header could land inside image bytes, so reading of that file STOPS there; the rest is
  counted as one corrupt record and its size is reported in ``bytes_skipped``.

A partial record is never yielded. A file that is not a TFRecord at all (its first header is
implausible) always raises :class:`NotATFRecordError`, with or without ``skip_corrupt``.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, TypeVar

import google_crc32c
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from carlink.datasets.errors import (
    CRCMismatchError,
    DecodeError,
    NotATFRecordError,
    RecordTooLargeError,
    TFRecordError,
    TruncatedRecordError,
)

DEFAULT_MAX_RECORD_BYTES = 256 * 1024 * 1024
HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of the length
FOOTER_BYTES = 4  # uint32 masked CRC of the data
_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
T = TypeVar("T")


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC32C: rotate right by 15 bits and add a constant (mod 2**32)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Record:
    """One record's payload and where it sits in its file."""

    index: int
    offset: int  # byte offset of the record's header
    data: bytes


@dataclass(frozen=True, slots=True)
class CorruptRecord:
    index: int
    offset: int
    reason: str


@dataclass
class ReadReport:
    """What a reader met so far: records yielded, records skipped as corrupt, bytes not read."""

    path: str
    records: int = 0
    corrupt: list[CorruptRecord] = field(default_factory=list)
    bytes_skipped: int = 0
    stopped_early: bool = False  # a corrupt length ended reading of the file

    @property
    def n_corrupt(self) -> int:
        return len(self.corrupt)


class TFRecordReader:
    """Iterate over the records of one TFRecord file, one record in memory at a time.

    ``report`` is filled in as iteration goes (records read, corrupt records skipped).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        verify_crc: bool = True,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        skip_corrupt: bool = False,
    ) -> None:
        if max_record_bytes <= 0:
            raise ValueError(f"max_record_bytes must be positive, got {max_record_bytes}")
        self.path = Path(path)
        self.verify_crc = verify_crc
        self.max_record_bytes = max_record_bytes
        self.skip_corrupt = skip_corrupt
        self.report = ReadReport(str(self.path))

    def __iter__(self) -> Iterator[Record]:
        with open(self.path, "rb", buffering=0) as f:
            yield from self._records(f, os.fstat(f.fileno()).st_size)

    def _records(self, f: BinaryIO, size: int) -> Iterator[Record]:
        offset = 0
        index = 0
        while offset < size:
            try:
                length = self._read_header(f, size, index, offset)
            except (TruncatedRecordError, CRCMismatchError) as exc:
                if not self.skip_corrupt:
                    raise
                self._stop(exc, size - offset)
                return
            except RecordTooLargeError as exc:
                if not self.skip_corrupt:
                    raise
                end = offset + HEADER_BYTES + exc.length + FOOTER_BYTES
                if end > size:  # its length is also beyond the file: cannot skip over it
                    self._stop(exc, size - offset)
                    return
                self.report.corrupt.append(CorruptRecord(index, offset, exc.problem))
                f.seek(end)
                offset, index = end, index + 1
                continue
            data = _read_exactly(f, length)  # lengths were checked against the file size
            footer = _read_exactly(f, FOOTER_BYTES)
            if self.verify_crc:
                stored = _U32.unpack(footer)[0]
                actual = masked_crc32c(data)
                if stored != actual:
                    exc = CRCMismatchError(
                        self.path, index, offset,
                        f"data CRC mismatch: stored masked crc32c 0x{stored:08x}, computed "
                        f"0x{actual:08x} over {length} data bytes at offset {offset + HEADER_BYTES}",
                    )
                    if not self.skip_corrupt:
                        raise exc
                    self.report.corrupt.append(CorruptRecord(index, offset, exc.problem))
                    offset += HEADER_BYTES + length + FOOTER_BYTES
                    index += 1
                    continue
            self.report.records += 1
            yield Record(index, offset, data)
            offset += HEADER_BYTES + length + FOOTER_BYTES
            index += 1

    def _read_header(self, f: BinaryIO, size: int, index: int, offset: int) -> int:
        header = _read_exactly(f, HEADER_BYTES)
        got = len(header)
        if got < HEADER_BYTES:
            if index == 0:
                raise NotATFRecordError(
                    self.path, index, offset,
                    f"not a TFRecord file: expected a {HEADER_BYTES}-byte record header, the file has "
                    f"only {size} bytes",
                )
            raise TruncatedRecordError(
                self.path, index, offset,
                f"file ends inside the record header: expected {HEADER_BYTES} bytes, found {got}",
            )
        length = _U64.unpack_from(header, 0)[0]
        remaining = size - offset - HEADER_BYTES - FOOTER_BYTES
        if self.verify_crc:
            stored = _U32.unpack_from(header, 8)[0]
            actual = masked_crc32c(header[:8])
            if stored != actual:
                if index == 0 and not 0 <= length <= remaining:
                    # Implausible length and a bad CRC on the very first header: wrong kind of file.
                    raise NotATFRecordError(
                        self.path, index, offset,
                        f"not a TFRecord file: the first 8 bytes {bytes(header[:8])!r} do not carry a "
                        f"valid record length (length CRC 0x{stored:08x} != 0x{actual:08x})",
                    )
                raise CRCMismatchError(
                    self.path, index, offset,
                    f"length CRC mismatch: stored masked crc32c 0x{stored:08x}, computed 0x{actual:08x} "
                    f"for length field {length}",
                )
        if length > self.max_record_bytes:
            exc = RecordTooLargeError(
                self.path, index, offset,
                f"record length {length} bytes exceeds the limit of {self.max_record_bytes} bytes "
                f"(max_record_bytes)",
            )
            exc.length = length
            raise exc
        if length > remaining:
            raise TruncatedRecordError(
                self.path, index, offset,
                f"truncated record: header says {length} data bytes + {FOOTER_BYTES} CRC bytes, "
                f"but only {max(remaining + FOOTER_BYTES, 0)} bytes remain in the file",
            )
        return length

    def _stop(self, exc: TFRecordError, rest: int) -> None:
        self.report.corrupt.append(CorruptRecord(exc.index, exc.offset, exc.problem + " (reading stopped here)"))
        self.report.bytes_skipped += rest
        self.report.stopped_early = True


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    """Read n bytes (fewer only at the end of the file); one read call in the usual case."""
    data = f.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def read_decoded(
    path: str | os.PathLike[str],
    decode: Callable[[Record, Path], T],
    *,
    reader: TFRecordReader | None = None,
    **options: Any,
) -> Iterator[T]:
    """``decode(record, path)`` for each record of a TFRecord file, one record in memory at a time.

    ``options`` are TFRecordReader's (``verify_crc``, ``max_record_bytes``, ``skip_corrupt``); or
    pass your own ``reader`` to see its report afterwards. With ``skip_corrupt``, a record whose
    payload does not decode (``decode`` raises DecodeError) is skipped and counted as corrupt, as
    one whose framing is bad.
    """
    reader = reader or TFRecordReader(path, **options)
    for record in reader:
        try:
            item = decode(record, reader.path)
        except DecodeError as exc:
            if not reader.skip_corrupt:
                raise
            reader.report.records -= 1  # counted as read by the framing layer; it is corrupt
            reader.report.corrupt.append(CorruptRecord(exc.index, exc.offset, exc.problem))
            continue
        yield item


def read_records(path: str | os.PathLike[str], **options: object) -> Iterator[bytes]:
    """Convenience: the payloads of a TFRecord file as bytes (options as for TFRecordReader)."""
    for record in TFRecordReader(path, **options):  # type: ignore[arg-type]
        yield bytes(record.data)


def _record_parts(data: bytes | bytearray | memoryview) -> tuple[bytes, bytes, bytes | bytearray | memoryview, bytes]:
    """A record on disk, in pieces: length, its masked CRC, the data itself, the data's CRC."""
    length = _U64.pack(len(data))
    return length, _U32.pack(masked_crc32c(length)), data, _U32.pack(masked_crc32c(data))


def encode_record(data: bytes | bytearray | memoryview) -> bytes:
    """One record's bytes on disk (header, data, data CRC)."""
    return b"".join(_record_parts(data))


class TFRecordWriter:
    """Write records to a TFRecord file (uncompressed, as TensorFlow writes them)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: io.BufferedWriter | None = open(self.path, "wb")
        self.records = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        for part in _record_parts(data):  # written piece by piece: the data is not copied
            self._file.write(part)
        self.records += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_records(path: str | os.PathLike[str], records: Iterable[bytes]) -> int:
    """Write all ``records`` to ``path``; return how many were written."""
    with TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
        return w.records


def parse_record(record: Record, path: str | os.PathLike[str], message: Message, expected: str) -> Message:
    """Parse ``record`` into ``message`` (filled in place and returned).

    A payload that does not parse raises DecodeError naming file, record index, byte offset and
    ``expected`` (what the payload should have been).
    """
    try:
        message.ParseFromString(record.data)
    except ProtobufDecodeError as exc:
        raise DecodeError(
            path, record.index, record.offset,
            f"expected a serialized {expected} ({len(record.data)} bytes): {exc}",
        ) from None
    return message
