"""TFRecord framing on corrupted copies of the real Waymo files (every bad-input case)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from carlink.datasets.errors import (
    CRCMismatchError,
    DecodeError,
    NotATFRecordError,
    RecordTooLargeError,
    TFRecordError,
    TruncatedRecordError,
)
from carlink.datasets.scene import read_frames
from carlink.datasets.tfrecord import (
    HEADER_BYTES,
    TFRecordReader,
    TFRecordWriter,
    encode_record,
    masked_crc32c,
    read_records,
)
from carlink.datasets.waymo import read_waymo_frames


@pytest.fixture(scope="module")
def real_payloads(waymo_frame_file: Path, waymo_labels_only_file: Path) -> tuple[bytes, bytes]:
    (big,) = read_records(waymo_frame_file)
    (small,) = read_records(waymo_labels_only_file)
    return big, small


@pytest.fixture()
def three_records(tmp_path: Path, real_payloads: tuple[bytes, bytes]) -> tuple[Path, list[int]]:
    """small | big | small, written by our writer; returns the path and each record's offset."""
    big, small = real_payloads
    path = tmp_path / "three.tfrecord"
    with TFRecordWriter(path) as w:
        for p in (small, big, small):
            w.write(p)
    offsets = [0, HEADER_BYTES + len(small) + 4]
    offsets.append(offsets[1] + HEADER_BYTES + len(big) + 4)
    return path, offsets


def corrupt(src: Path, dst: Path, at: int) -> Path:
    data = bytearray(src.read_bytes())
    data[at] ^= 0x5A
    dst.write_bytes(bytes(data))
    return dst


def test_masked_crc_matches_the_real_file(waymo_frame_file: Path) -> None:
    raw = waymo_frame_file.read_bytes()
    (length,) = struct.unpack_from("<Q", raw, 0)
    assert struct.unpack_from("<I", raw, 8)[0] == masked_crc32c(raw[:8])
    assert struct.unpack_from("<I", raw, 12 + length)[0] == masked_crc32c(raw[12:12 + length])
    assert len(raw) == 12 + length + 4


def test_writer_round_trips_real_payloads_byte_for_byte(tmp_path: Path, waymo_frame_file: Path,
                                                        real_payloads: tuple[bytes, bytes]) -> None:
    out = tmp_path / "copy.tfrecord"
    with TFRecordWriter(out) as w:
        w.write(real_payloads[0])
    assert out.read_bytes() == waymo_frame_file.read_bytes()
    assert encode_record(real_payloads[0]) == waymo_frame_file.read_bytes()


def test_reader_reports_index_and_offset(three_records: tuple[Path, list[int]]) -> None:
    path, offsets = three_records
    reader = TFRecordReader(path)
    records = list(reader)
    assert [(r.index, r.offset) for r in records] == list(enumerate(offsets))
    assert reader.report.records == 3 and reader.report.n_corrupt == 0


def test_truncated_file(tmp_path: Path, waymo_frame_file: Path) -> None:
    raw = waymo_frame_file.read_bytes()
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TruncatedRecordError) as err:
        list(TFRecordReader(cut))
    msg = str(err.value)
    assert str(cut) in msg and "record 0" in msg and "byte offset 0" in msg
    assert f"header says {len(raw) - 16} data bytes" in msg
    reader = TFRecordReader(cut, skip_corrupt=True)
    assert list(reader) == []
    assert reader.report.n_corrupt == 1 and reader.report.stopped_early
    assert reader.report.bytes_skipped == len(raw) // 2


def test_truncated_inside_header_of_second_record(tmp_path: Path, three_records) -> None:
    path, offsets = three_records
    cut = tmp_path / "cut2.tfrecord"
    cut.write_bytes(path.read_bytes()[: offsets[1] + 5])
    with pytest.raises(TruncatedRecordError, match=r"record 1 at byte offset %d: .*expected 12 bytes, found 5" % offsets[1]):
        list(TFRecordReader(cut))
    reader = TFRecordReader(cut, skip_corrupt=True)
    assert [r.index for r in reader] == [0]  # the intact first record, never a partial one


def test_length_crc_mismatch(tmp_path: Path, three_records) -> None:
    path, offsets = three_records
    bad = corrupt(path, tmp_path / "lencrc.tfrecord", offsets[1] + 9)  # a byte of record 1's length CRC
    with pytest.raises(CRCMismatchError) as err:
        list(TFRecordReader(bad))
    assert f"record 1 at byte offset {offsets[1]}" in str(err.value)
    assert "length CRC mismatch" in str(err.value) and str(bad) in str(err.value)
    # After a bad length nothing after it can be trusted: reading stops, the rest is reported.
    reader = TFRecordReader(bad, skip_corrupt=True)
    assert [r.index for r in reader] == [0]
    assert reader.report.stopped_early and reader.report.bytes_skipped == bad.stat().st_size - offsets[1]
    assert reader.report.corrupt[0].index == 1


def test_flipped_length_crc_of_the_real_single_record_file(tmp_path: Path, waymo_frame_file: Path) -> None:
    bad = corrupt(waymo_frame_file, tmp_path / "lencrc1.tfrecord", 10)
    with pytest.raises(CRCMismatchError, match="record 0 at byte offset 0: length CRC mismatch"):
        list(read_waymo_frames(bad))


def test_data_byte_flipped(tmp_path: Path, three_records) -> None:
    path, offsets = three_records
    bad = corrupt(path, tmp_path / "data.tfrecord", offsets[1] + HEADER_BYTES + 1000)
    with pytest.raises(CRCMismatchError) as err:
        list(TFRecordReader(bad))
    assert "data CRC mismatch" in str(err.value) and f"record 1 at byte offset {offsets[1]}" in str(err.value)
    # The framing is intact: skip just that record and go on.
    reader = TFRecordReader(bad, skip_corrupt=True)
    assert [r.index for r in reader] == [0, 2]
    assert reader.report.n_corrupt == 1 and not reader.report.stopped_early
    frames_reader = TFRecordReader(bad, skip_corrupt=True)
    frames = list(read_waymo_frames(bad, reader=frames_reader))
    assert [f.source.record_index for f in frames] == [0, 2]
    assert all(f.context_name == "1071392229495085036_1844_790_1864_790" for f in frames)
    # Without CRC checks the flipped byte is not noticed (documented trade-off).
    assert len(list(TFRecordReader(bad, verify_crc=False))) == 3


def test_data_crc_flipped(tmp_path: Path, waymo_frame_file: Path) -> None:
    size = waymo_frame_file.stat().st_size
    bad = corrupt(waymo_frame_file, tmp_path / "datacrc.tfrecord", size - 2)
    with pytest.raises(CRCMismatchError, match=r"record 0 at byte offset 0: data CRC mismatch.*2168758 data bytes"):
        list(read_waymo_frames(bad))
    reader = TFRecordReader(bad, skip_corrupt=True)
    assert list(read_waymo_frames(bad, reader=reader)) == []
    assert reader.report.n_corrupt == 1 and reader.report.records == 0


@pytest.mark.parametrize("content", [b"", b"hello", b"this is a text file, not a TFRecord\n" * 20])
def test_not_a_tfrecord(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    if not content:  # an empty file is a valid TFRecord file with no records
        assert list(TFRecordReader(path)) == []
        return
    for skip in (False, True):
        with pytest.raises(NotATFRecordError) as err:
            list(TFRecordReader(path, skip_corrupt=skip))
        assert "not a TFRecord file" in str(err.value) and str(path) in str(err.value)


def test_a_jpeg_is_not_a_tfrecord(tmp_path: Path, data_dir: Path) -> None:
    jpeg = next((data_dir / "other_driving_images" / "nuscenes").glob("*.jpg"))
    with pytest.raises(NotATFRecordError, match="record 0 at byte offset 0"):
        list(read_frames(jpeg))


def test_oversize_length_with_valid_crc(tmp_path: Path, real_payloads) -> None:
    huge = 300 * 2**20
    header = struct.pack("<Q", huge)
    path = tmp_path / "huge.tfrecord"
    path.write_bytes(encode_record(real_payloads[1]) + header + struct.pack("<I", masked_crc32c(header)) + b"x" * 100)
    with pytest.raises(RecordTooLargeError) as err:
        list(TFRecordReader(path))
    assert f"record length {huge} bytes exceeds the limit of {256 * 2**20}" in str(err.value)
    assert "record 1" in str(err.value)
    reader = TFRecordReader(path, skip_corrupt=True)
    assert [r.index for r in reader] == [0] and reader.report.n_corrupt == 1


def test_record_above_a_lower_limit_is_skipped_without_losing_the_next(three_records) -> None:
    path, _ = three_records
    with pytest.raises(RecordTooLargeError, match="record 1 .*exceeds the limit of 1048576 bytes"):
        list(TFRecordReader(path, max_record_bytes=2**20))
    reader = TFRecordReader(path, max_record_bytes=2**20, skip_corrupt=True)
    assert [r.index for r in reader] == [0, 2]
    assert not reader.report.stopped_early


def test_undecodable_protobuf_with_valid_crcs(tmp_path: Path, real_payloads) -> None:
    path = tmp_path / "garbage.tfrecord"
    with TFRecordWriter(path) as w:
        w.write(real_payloads[1])
        w.write(b"\x0a\xff\xff\xff\xff\x0f garbage that is no protobuf")
        w.write(real_payloads[1])
    with pytest.raises(DecodeError) as err:
        list(read_waymo_frames(path))
    offset = HEADER_BYTES + len(real_payloads[1]) + 4
    assert f"record 1 at byte offset {offset}" in str(err.value)
    assert "expected a serialized waymo.open_dataset.Frame" in str(err.value)
    assert isinstance(err.value, TFRecordError)
    reader = TFRecordReader(path, skip_corrupt=True)
    frames = list(read_waymo_frames(path, reader=reader))
    assert [f.source.record_index for f in frames] == [0, 2]
    assert reader.report.n_corrupt == 1 and reader.report.records == 2
