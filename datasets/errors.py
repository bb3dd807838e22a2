"""Exceptions of carlink.datasets: every one names the file and where in it things went wrong."""

from __future__ import annotations

from pathlib import Path


class DatasetError(Exception):
    """Base class of every error raised by the dataset readers."""


class TFRecordError(DatasetError):
    """A TFRecord file could not be read at one record.

    ``index`` is the 0-based record index and ``offset`` the byte offset of that record's header
    in the file; both are also in the message.
    """

    def __init__(self, path: str | Path, index: int, offset: int, problem: str) -> None:
        self.path = str(path)
        self.index = index
        self.offset = offset
        self.problem = problem
        super().__init__(f"{self.path}: record {index} at byte offset {offset}: {problem}")


class TruncatedRecordError(TFRecordError):
    """The file ends inside a record (header, data or data CRC)."""


class CRCMismatchError(TFRecordError):
    """A masked CRC32C (of the length or of the data) does not match the stored one."""


class RecordTooLargeError(TFRecordError):
    """A record's length is above the reader's limit (``max_record_bytes``)."""

    length: int = 0  # the (CRC-valid) length found in the header


class NotATFRecordError(TFRecordError):
    """The file does not start with a TFRecord header (wrong kind of file)."""


class DecodeError(TFRecordError):
    """A record's framing and CRCs are fine but its payload is not the expected protobuf."""


class TraceError(DatasetError):
    """A bandwidth/RTT trace file could not be read."""


class UnknownTraceFormatError(TraceError):
    """The trace format could not be detected, or an unknown format name was given."""


class TraceParseError(TraceError):
    """A line of a trace file is not what its format expects (message names file and line)."""

    def __init__(self, path: str | Path, line: int, problem: str) -> None:
        self.path = str(path)
        self.line = line
        super().__init__(f"{self.path}: line {line}: {problem}")


class NonMonotonicTimestampsError(TraceParseError):
    """Timestamps of a trace go backwards (message names file and line)."""
