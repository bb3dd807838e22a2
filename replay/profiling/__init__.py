"""Measure a profile on real frames: what each cloud option of each task is worth and costs.

The parts, each in its own module:

* :mod:`.options`: the option grid (``--options``: resize targets x codecs, or RESIZE:CODEC pairs);
* :mod:`.runtimes`: runtime tables for other hardware (the profiler's CSV or `carlink models bench`'s);
* :mod:`.config`: what a run measures (:class:`ProfileConfig`) and the evaluated classes;
* :mod:`.frames` and :mod:`.tasks`: the frames read and the tasks (camera x image size) chosen;
* :mod:`.checkpoint`: every measurement in a JSONL file as it is made (resume after a crash);
* :mod:`.measure`: the model runs (car's encoder, cloud's decoder, the metric's matching);
* :mod:`.assemble`: the typed :class:`carlink.profile.Profile` from the measurements;
* :mod:`.run`: one run end to end, written with :meth:`carlink.profile.Profile.save`.

An interrupted-and-resumed run gives the same profile as an uninterrupted one (the same bytes when
runtimes come from a table; measured runtimes differ from run to run).
"""

from carlink.replay.profiling.checkpoint import ON_CAR_ID, Measurement, iter_measurements
from carlink.replay.profiling.config import PROFILED_CLASSES, ProfileConfig, metric_name, parse_classes
from carlink.replay.profiling.errors import ProfilerError, ProfilingStopped
from carlink.replay.profiling.frames import FrameRef, load_frames
from carlink.replay.profiling.measure import RunResult
from carlink.replay.profiling.options import DEFAULT_OPTIONS, Transport, format_options, parse_options
from carlink.replay.profiling.run import checkpoint_path, command_line, run_profile
from carlink.replay.profiling.runtimes import RuntimeTable, this_hardware
from carlink.replay.profiling.tasks import TaskKey, parse_cameras, parse_tasks, select_tasks

__all__ = [
    "DEFAULT_OPTIONS", "ON_CAR_ID", "PROFILED_CLASSES", "FrameRef", "Measurement", "ProfileConfig",
    "ProfilerError", "ProfilingStopped", "RunResult", "RuntimeTable", "TaskKey", "Transport",
    "checkpoint_path", "command_line", "format_options", "iter_measurements", "load_frames",
    "metric_name", "parse_cameras", "parse_classes", "parse_options", "parse_tasks", "run_profile", "select_tasks",
    "this_hardware",
]
