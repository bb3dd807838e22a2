from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    ENCODING_JPEG: _ClassVar[Encoding]
    ENCODING_PNG: _ClassVar[Encoding]
    ENCODING_RAW_BGR: _ClassVar[Encoding]

class ObjectClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECT_CLASS_UNKNOWN: _ClassVar[ObjectClass]
    OBJECT_CLASS_VEHICLE: _ClassVar[ObjectClass]
    OBJECT_CLASS_PEDESTRIAN: _ClassVar[ObjectClass]
    OBJECT_CLASS_SIGN: _ClassVar[ObjectClass]
    OBJECT_CLASS_CYCLIST: _ClassVar[ObjectClass]
ENCODING_UNSPECIFIED: Encoding
ENCODING_JPEG: Encoding
ENCODING_PNG: Encoding
ENCODING_RAW_BGR: Encoding
OBJECT_CLASS_UNKNOWN: ObjectClass
OBJECT_CLASS_VEHICLE: ObjectClass
OBJECT_CLASS_PEDESTRIAN: ObjectClass
OBJECT_CLASS_SIGN: ObjectClass
OBJECT_CLASS_CYCLIST: ObjectClass

class ImageSize(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Box2D(_message.Message):
    __slots__ = ("center_x", "center_y", "length", "width")
    CENTER_X_FIELD_NUMBER: _ClassVar[int]
    CENTER_Y_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    center_x: float
    center_y: float
    length: float
    width: float
    def __init__(self, center_x: _Optional[float] = ..., center_y: _Optional[float] = ..., length: _Optional[float] = ..., width: _Optional[float] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("box", "score", "cls")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CLS_FIELD_NUMBER: _ClassVar[int]
    box: Box2D
    score: float
    cls: ObjectClass
    def __init__(self, box: _Optional[_Union[Box2D, _Mapping]] = ..., score: _Optional[float] = ..., cls: _Optional[_Union[ObjectClass, str]] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("task", "model", "encoding", "payload", "payload_size", "original_size", "frame_id", "capture_time_unix_us", "deadline_unix_us")
    TASK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    task: str
    model: str
    encoding: Encoding
    payload: bytes
    payload_size: ImageSize
    original_size: ImageSize
    frame_id: int
    capture_time_unix_us: int
    deadline_unix_us: int
    def __init__(self, task: _Optional[str] = ..., model: _Optional[str] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., payload: _Optional[bytes] = ..., payload_size: _Optional[_Union[ImageSize, _Mapping]] = ..., original_size: _Optional[_Union[ImageSize, _Mapping]] = ..., frame_id: _Optional[int] = ..., capture_time_unix_us: _Optional[int] = ..., deadline_unix_us: _Optional[int] = ...) -> None: ...

class ServerTimings(_message.Message):
    __slots__ = ("queue_wait_ms", "decode_ms", "inference_ms", "total_ms", "batch_size")
    QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    queue_wait_ms: float
    decode_ms: float
    inference_ms: float
    total_ms: float
    batch_size: int
    def __init__(self, queue_wait_ms: _Optional[float] = ..., decode_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("task", "model", "frame_id", "detections", "timings", "untrained", "decoded_size", "server_time_unix_us")
    TASK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FRAME_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    UNTRAINED_FIELD_NUMBER: _ClassVar[int]
    DECODED_SIZE_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    task: str
    model: str
    frame_id: int
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    timings: ServerTimings
    untrained: bool
    decoded_size: ImageSize
    server_time_unix_us: int
    def __init__(self, task: _Optional[str] = ..., model: _Optional[str] = ..., frame_id: _Optional[int] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., timings: _Optional[_Union[ServerTimings, _Mapping]] = ..., untrained: _Optional[bool] = ..., decoded_size: _Optional[_Union[ImageSize, _Mapping]] = ..., server_time_unix_us: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "family", "input_size", "classes", "untrained", "runtime_p50_ms", "runtime_p99_ms", "runtime_samples", "batchable", "max_batch", "device", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    UNTRAINED_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_P50_MS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_P99_MS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BATCHABLE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    input_size: ImageSize
    classes: _containers.RepeatedScalarFieldContainer[ObjectClass]
    untrained: bool
    runtime_p50_ms: float
    runtime_p99_ms: float
    runtime_samples: int
    batchable: bool
    max_batch: int
    device: str
    description: str
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., input_size: _Optional[_Union[ImageSize, _Mapping]] = ..., classes: _Optional[_Iterable[_Union[ObjectClass, str]]] = ..., untrained: _Optional[bool] = ..., runtime_p50_ms: _Optional[float] = ..., runtime_p99_ms: _Optional[float] = ..., runtime_samples: _Optional[int] = ..., batchable: _Optional[bool] = ..., max_batch: _Optional[int] = ..., device: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ("client_time_unix_us",)
    CLIENT_TIME_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    client_time_unix_us: int
    def __init__(self, client_time_unix_us: _Optional[int] = ...) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("client_time_unix_us", "server_time_unix_us")
    CLIENT_TIME_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_UNIX_US_FIELD_NUMBER: _ClassVar[int]
    client_time_unix_us: int
    server_time_unix_us: int
    def __init__(self, client_time_unix_us: _Optional[int] = ..., server_time_unix_us: _Optional[int] = ...) -> None: ...
