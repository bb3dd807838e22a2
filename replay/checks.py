"""What a replay's reader must be told: inputs that run but would make the numbers mislead.

Each check returns warnings (plain sentences); the runner puts them in ``summary.json``
(``inputs.warnings``) and the CLI prints them on stderr. None of them stops a replay.
"""

from __future__ import annotations

from typing import Sequence

from carlink.datasets.traces import Trace
from carlink.replay.frame_utility import labelled
from carlink.replay.per_frame import PerFrameIndex, overlapping_frames
from carlink.replay.player import PlayedFrame
from carlink.replay.profile_view import ReplayProfile


def scene_warnings(frames: Sequence[PlayedFrame], profile: ReplayProfile) -> list[str]:
    """Tasks whose camera the scene never has; cameras with no label at all (undefined utility)."""
    cams = sorted(set().union(*(pf.cameras() for pf in frames))) if frames else []
    tasks = profile.tasks
    absent = [t for t in tasks if t.camera not in cams]
    out = []
    if len(absent) == len(tasks):
        out.append(f"no task of profile {profile.path} matches a camera of the scene (tasks watch "
                   f"{', '.join(sorted({t.camera for t in tasks}))}; the scene has {', '.join(cams) or 'no camera'}): "
                   "nothing is evaluated and every policy's utility is undefined")
        return out
    for t in absent:
        out.append(f"task {t.name}: the scene has no {t.camera} camera; the task is not evaluated")
    for t in tasks:
        if t.camera not in cams:
            continue
        if not any(labelled(pf, t) for pf in frames if t.camera in pf.cameras()):
            what = f"of the classes {', '.join(c.name.lower() for c in t.classes)} " if t.classes else ""
            out.append(f"task {t.name}: camera {t.camera} has no label {what}in the scene; its task-frames are "
                       "undefined (left out of every mean), not zero")
    return out


def trace_warnings(trace: Trace, offset_s: float, needed_s: float) -> list[str]:
    """An offset past the trace's end, or a trace shorter than the replay (it loops)."""
    out = []
    duration = trace.duration_s
    if offset_s >= duration:
        out.append(f"--trace-offset {offset_s:g} s is past the end of trace {trace.name} ({duration:g} s): "
                   f"the trace loops, so the replay starts {offset_s % duration:g} s into it")
    elif offset_s + needed_s > duration:
        out.append(f"trace {trace.name} ({duration:g} s from offset {offset_s:g} s) is shorter than the "
                   f"replay ({needed_s:.1f} s): it loops")
    return out


def overlap_warnings(profile: ReplayProfile, frames: Sequence[PlayedFrame]) -> list[str]:
    """Replayed images the planning profile was measured on: accuracy on them is not evaluation."""
    ids = overlapping_frames(PerFrameIndex(profile.profile), frames, profile.tasks)
    if not ids:
        return []
    shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    return [f"the planning profile {profile.path} was measured on {len(ids)} of the replayed images ({shown}): "
            "results on them are not an evaluation; replay other sequences than the profile's"]
