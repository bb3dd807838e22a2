"""COCO category -> Waymo class, for detectors trained on COCO.

Choices (Waymo's labelling specification decides, since evaluation is against Waymo labels):
- car, truck, bus -> VEHICLE.
- motorcycle -> VEHICLE: Waymo labels motorcycles, rider included, as vehicles; its cyclist
  class means bicycles.
- train -> VEHICLE: on the street these are trams and light rail, which Waymo boxes as vehicles.
- person -> PEDESTRIAN. A cyclist's rider is also a COCO "person"; such boxes count as
  pedestrians, since telling riders apart would need the bicycle box too.
- bicycle -> CYCLIST. COCO boxes the bicycle only, Waymo the bicycle and its rider, so these boxes
  are smaller than Waymo's; they still overlap enough for IoU 0.5 in most side views.
- stop sign -> SIGN. Waymo's sign class exists only among lidar labels, not camera labels;
  it is kept so that sign-aware tasks can use it.
- traffic light, and every other category (animals, boats, airplanes, objects) -> dropped.
"""

from __future__ import annotations

from carlink.detection import WaymoClass

# torchvision's COCO category list (index = model label id), with its "N/A" gaps, as in
# torchvision.models.detection._meta._COCO_CATEGORIES. A test checks it against torchvision.
COCO_CATEGORIES: tuple[str, ...] = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

COCO_TO_WAYMO: dict[str, WaymoClass] = {
    "car": WaymoClass.VEHICLE,
    "truck": WaymoClass.VEHICLE,
    "bus": WaymoClass.VEHICLE,
    "motorcycle": WaymoClass.VEHICLE,
    "train": WaymoClass.VEHICLE,
    "person": WaymoClass.PEDESTRIAN,
    "bicycle": WaymoClass.CYCLIST,
    "stop sign": WaymoClass.SIGN,
}

# Waymo classes a COCO model can output after mapping.
COCO_WAYMO_CLASSES: tuple[WaymoClass, ...] = tuple(sorted(set(COCO_TO_WAYMO.values())))


def coco_label_map(categories: tuple[str, ...] = COCO_CATEGORIES) -> list[int]:
    """Per COCO label id, the Waymo class number, or -1 where the category is dropped."""
    return [int(COCO_TO_WAYMO[c]) if c in COCO_TO_WAYMO else -1 for c in categories]
