"""The Waymo subset proto uses the official field numbers (staleness: tests/core/test_proto_generated.py)."""

from __future__ import annotations


def test_official_field_numbers() -> None:
    """Spot-check the numbers that real files depend on (from the official dataset/label.proto)."""
    from carlink.datasets import waymo_frame_pb2 as pb

    def number(message, field: str) -> int:
        return message.DESCRIPTOR.fields_by_name[field].number

    assert [number(pb.Frame, f) for f in ("context", "timestamp_micros", "images", "laser_labels", "camera_labels")] == [1, 2, 4, 6, 8]
    assert [number(pb.CameraImage, f) for f in ("name", "image", "pose_timestamp")] == [1, 2, 5]
    assert [number(pb.Label.Box, f) for f in ("center_x", "center_y", "length", "width")] == [1, 2, 5, 4]
    assert [number(pb.Label, f) for f in ("box", "type", "id")] == [1, 3, 4]
    assert [number(pb.CameraCalibration, f) for f in ("name", "width", "height")] == [1, 4, 5]
    assert [number(pb.Context.Stats, f) for f in ("time_of_day", "location", "weather")] == [2, 3, 4]
