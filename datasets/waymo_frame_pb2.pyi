from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf.internal import python_message as _python_message
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CameraName(_message.Message):
    __slots__ = ()
    class Name(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[CameraName.Name]
        FRONT: _ClassVar[CameraName.Name]
        FRONT_LEFT: _ClassVar[CameraName.Name]
        FRONT_RIGHT: _ClassVar[CameraName.Name]
        SIDE_LEFT: _ClassVar[CameraName.Name]
        SIDE_RIGHT: _ClassVar[CameraName.Name]
        REAR_LEFT: _ClassVar[CameraName.Name]
        REAR: _ClassVar[CameraName.Name]
        REAR_RIGHT: _ClassVar[CameraName.Name]
    UNKNOWN: CameraName.Name
    FRONT: CameraName.Name
    FRONT_LEFT: CameraName.Name
    FRONT_RIGHT: CameraName.Name
    SIDE_LEFT: CameraName.Name
    SIDE_RIGHT: CameraName.Name
    REAR_LEFT: CameraName.Name
    REAR: CameraName.Name
    REAR_RIGHT: CameraName.Name
    def __init__(self) -> None: ...

class Label(_message.Message):
    __slots__ = ("box", "type", "id")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNKNOWN: _ClassVar[Label.Type]
        TYPE_VEHICLE: _ClassVar[Label.Type]
        TYPE_PEDESTRIAN: _ClassVar[Label.Type]
        TYPE_SIGN: _ClassVar[Label.Type]
        TYPE_CYCLIST: _ClassVar[Label.Type]
    TYPE_UNKNOWN: Label.Type
    TYPE_VEHICLE: Label.Type
    TYPE_PEDESTRIAN: Label.Type
    TYPE_SIGN: Label.Type
    TYPE_CYCLIST: Label.Type
    class Box(_message.Message):
        __slots__ = ("center_x", "center_y", "center_z", "length", "width", "height", "heading")
        CENTER_X_FIELD_NUMBER: _ClassVar[int]
        CENTER_Y_FIELD_NUMBER: _ClassVar[int]
        CENTER_Z_FIELD_NUMBER: _ClassVar[int]
        LENGTH_FIELD_NUMBER: _ClassVar[int]
        WIDTH_FIELD_NUMBER: _ClassVar[int]
        HEIGHT_FIELD_NUMBER: _ClassVar[int]
        HEADING_FIELD_NUMBER: _ClassVar[int]
        center_x: float
        center_y: float
        center_z: float
        length: float
        width: float
        height: float
        heading: float
        def __init__(self, center_x: _Optional[float] = ..., center_y: _Optional[float] = ..., center_z: _Optional[float] = ..., length: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ..., heading: _Optional[float] = ...) -> None: ...
    BOX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    box: Label.Box
    type: Label.Type
    id: str
    def __init__(self, box: _Optional[_Union[Label.Box, _Mapping]] = ..., type: _Optional[_Union[Label.Type, str]] = ..., id: _Optional[str] = ...) -> None: ...

class CameraCalibration(_message.Message):
    __slots__ = ("name", "width", "height")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: CameraName.Name
    width: int
    height: int
    def __init__(self, name: _Optional[_Union[CameraName.Name, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Context(_message.Message):
    __slots__ = ("name", "camera_calibrations", "stats")
    class Stats(_message.Message):
        __slots__ = ("time_of_day", "location", "weather")
        TIME_OF_DAY_FIELD_NUMBER: _ClassVar[int]
        LOCATION_FIELD_NUMBER: _ClassVar[int]
        WEATHER_FIELD_NUMBER: _ClassVar[int]
        time_of_day: str
        location: str
        weather: str
        def __init__(self, time_of_day: _Optional[str] = ..., location: _Optional[str] = ..., weather: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAMERA_CALIBRATIONS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    name: str
    camera_calibrations: _containers.RepeatedCompositeFieldContainer[CameraCalibration]
    stats: Context.Stats
    def __init__(self, name: _Optional[str] = ..., camera_calibrations: _Optional[_Iterable[_Union[CameraCalibration, _Mapping]]] = ..., stats: _Optional[_Union[Context.Stats, _Mapping]] = ...) -> None: ...

class CameraImage(_message.Message):
    __slots__ = ("name", "image", "pose_timestamp")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    POSE_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    name: CameraName.Name
    image: bytes
    pose_timestamp: float
    def __init__(self, name: _Optional[_Union[CameraName.Name, str]] = ..., image: _Optional[bytes] = ..., pose_timestamp: _Optional[float] = ...) -> None: ...

class CameraLabels(_message.Message):
    __slots__ = ("name", "labels")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: CameraName.Name
    labels: _containers.RepeatedCompositeFieldContainer[Label]
    def __init__(self, name: _Optional[_Union[CameraName.Name, str]] = ..., labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("context", "timestamp_micros", "images", "laser_labels", "camera_labels")
    Extensions: _python_message._ExtensionDict
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MICROS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LASER_LABELS_FIELD_NUMBER: _ClassVar[int]
    CAMERA_LABELS_FIELD_NUMBER: _ClassVar[int]
    context: Context
    timestamp_micros: int
    images: _containers.RepeatedCompositeFieldContainer[CameraImage]
    laser_labels: _containers.RepeatedCompositeFieldContainer[Label]
    camera_labels: _containers.RepeatedCompositeFieldContainer[CameraLabels]
    def __init__(self, context: _Optional[_Union[Context, _Mapping]] = ..., timestamp_micros: _Optional[int] = ..., images: _Optional[_Iterable[_Union[CameraImage, _Mapping]]] = ..., laser_labels: _Optional[_Iterable[_Union[Label, _Mapping]]] = ..., camera_labels: _Optional[_Iterable[_Union[CameraLabels, _Mapping]]] = ...) -> None: ...
