"""The model zoo shared by car and cloud: one detector interface, many variants."""

from carlink.zoo.base import Detector, ModelSpec

__all__ = ["Detector", "ModelSpec"]
