"""One profile run: frames, tasks, measuring into the checkpoint, assembling, writing the file."""

from __future__ import annotations

import shlex
from pathlib import Path

from carlink.profile import Profile
from carlink.replay.distributed import RayTarget
from carlink.replay.profiling.assemble import assemble
from carlink.replay.profiling.checkpoint import Checkpoint
from carlink.replay.profiling.config import ProfileConfig
from carlink.replay.profiling.errors import ProfilerError
from carlink.replay.profiling.frames import load_frames
from carlink.replay.profiling.measure import RunResult, measure
from carlink.replay.profiling.runtimes import RuntimeTable
from carlink.replay.profiling.tasks import select_tasks
from carlink.zoo.registry import get_spec


def checkpoint_path(output: Path) -> Path:
    return output.with_name(output.name + ".partial.jsonl")


def command_line(config: ProfileConfig, output: str, table: RuntimeTable | None,
                 runtime_backend: str | None = None) -> str:
    """The canonical command that rebuilds a profile (resume flags left out: same result)."""
    parts = ["carlink", "profile", "run", *config.scenes,
             "--tasks", "all" if config.tasks is None else ",".join(config.tasks),
             "--models", ",".join(config.models), "--onboard", config.onboard,
             "--options", config.options_text(),
             "--deadline-ms", f"{config.deadline_ms:g}", "--weight", f"{config.weight:g}",
             "--window", str(config.window_frames), "--empty-frames", config.empty_frames.value]
    if config.as_cameras is not None:
        parts += ["--as-cameras", ",".join(config.as_cameras)]
    if config.utility_classes is not None:
        parts += ["--classes", ",".join(c.label for c in config.evaluated())]
    if config.backend != "auto":
        parts += ["--backend", config.backend]
    if config.max_frames is not None:
        parts += ["--max-frames", str(config.max_frames)]
    if table is not None:
        parts += ["--runtime-table", table.source]
        if runtime_backend is not None:
            parts += ["--runtime-backend", runtime_backend]
    if config.description:
        parts += ["--description", config.description]
    parts += ["-o", output]
    return " ".join(shlex.quote(p) for p in parts)


def run_profile(
    config: ProfileConfig,
    output: str | Path,
    *,
    resume: bool = False,
    table: RuntimeTable | None = None,
    runtime_backend: str | None = None,
    stop_after: int | None = None,
    progress_bar: bool = True,
    keep_checkpoint: bool = False,
    ray: RayTarget | None = None,
) -> tuple[Profile, RunResult]:
    """Measure (or resume measuring) and write the profile to ``output``; return it.

    With ``ray``, the measurements run on Ray workers (:mod:`.on_ray`); the profile is the same.

    The checkpoint ``<output>.partial.jsonl`` is deleted once the profile is written, unless
    ``keep_checkpoint`` (then a later ``resume`` re-assembles the file without measuring).
    """
    from tqdm import tqdm

    output = Path(output)
    for m in [config.onboard, *config.models]:
        get_spec(m)  # unknown names fail before anything is read
    config.options()  # so does an option a model cannot have ('input' without an input size)
    frames = load_frames(config.scenes, config.max_frames)
    if not frames:
        raise ProfilerError("the scenes hold no frame")
    task_keys, skipped = select_tasks(config.tasks, frames, config.evaluated(), config.empty_frames)
    if config.as_cameras is not None and len(task_keys) != 1:
        raise ProfilerError(f"--as-cameras writes one measured task under several cameras, but "
                            f"{len(task_keys)} tasks were selected ({', '.join(t.name for t in task_keys)}); "
                            "choose one with --tasks")
    items = sum(1 for f in frames for t in task_keys if t.image_of(f.frame) is not None)
    ckpt = Checkpoint(checkpoint_path(output), config.fingerprint(), resume)
    try:
        if ray is not None:
            from carlink.replay.profiling.on_ray import measure_on_ray

            result = measure_on_ray(config, frames, task_keys, ckpt, ray, stop_after=stop_after,
                                    progress_bar=progress_bar)
        else:
            with tqdm(total=items, unit="image", desc="profiling", disable=not progress_bar, leave=False) as bar:
                result = measure(config, frames, task_keys, ckpt, stop_after=stop_after, progress=bar.update)
    finally:
        ckpt.close()
    profile = assemble(config, frames, task_keys, skipped, ckpt.done,
                       command=command_line(config, str(output), table, runtime_backend), table=table)
    profile.to_tasks()  # never write a file the loader would refuse
    profile.save(output)
    if not keep_checkpoint:
        ckpt.path.unlink(missing_ok=True)
    return profile, result
