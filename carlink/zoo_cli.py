"""``carlink models``: list, describe and fetch the models of the zoo shared by car and cloud."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from carlink.cli import CommandError


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "models", help="list, describe and fetch the models of the zoo",
        description="The model zoo shared by car and cloud: OpenCV HOG pedestrian detectors "
        "(pretrained, offline), torchvision COCO detectors (weights from a file or the torch hub "
        "cache, never downloaded implicitly) and a no-op model for benchmarks.",
    )
    p.set_defaults(parser=p)
    msub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")

    lp = msub.add_parser("list", help="list every model with its family, classes and weights status",
                         description="List the zoo's models and whether their weights are available.")
    lp.add_argument("--cache-dir", type=Path, default=None,
                    help="checkpoint folder to look for weights in (default: torch hub's checkpoints folder)")
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lp.set_defaults(func=_list)

    ip = msub.add_parser("info", help="describe one model and where its weights are looked for",
                         description="Describe one model: spec, weights source and local status.")
    ip.add_argument("name", metavar="NAME", help="model name (see `carlink models list`)")
    ip.add_argument("--cache-dir", type=Path, default=None,
                    help="checkpoint folder to look for weights in (default: torch hub's checkpoints folder)")
    ip.add_argument("--json", action="store_true", help="print JSON instead of text")
    ip.set_defaults(func=_info)

    fp = msub.add_parser(
        "fetch", help="download a model's official weights into the cache (needs network access)",
        description="Download the official weights of a torchvision model into the torch hub "
        "checkpoint folder (or --cache-dir), checking the file's sha256 prefix. Does nothing "
        "when the file is already there. Models with built-in weights (HOG, noop) need no fetch.",
    )
    fp.add_argument("name", metavar="NAME", help="model name (see `carlink models list`)")
    fp.add_argument("--cache-dir", type=Path, default=None,
                    help="folder to store the checkpoint in (default: torch hub's checkpoints folder)")
    fp.add_argument("--mirror", default=None, metavar="URL",
                    help="download from this folder URL instead of download.pytorch.org "
                    "(same file names; for fleets without internet access)")
    fp.add_argument("--progress", action="store_true", help="show a download progress bar")
    fp.set_defaults(func=_fetch)


def _spec(name: str):
    from carlink.zoo.registry import UnknownModelError, get_spec

    try:
        return get_spec(name)
    except UnknownModelError as exc:
        raise CommandError(str(exc)) from exc


def _weights_status(name: str, cache_dir: Path | None) -> dict[str, Any]:
    """Where a model's weights come from and whether they are here, without loading anything."""
    from carlink.zoo.torchvision_models import TORCHVISION_MODELS
    from carlink.zoo.weights import hub_checkpoint_dir

    info = TORCHVISION_MODELS.get(name)
    if info is None:
        return {"weights": "built-in", "path": None, "url": None, "present": True}
    path = hub_checkpoint_dir(cache_dir) / info.weights.file_name
    present = path.is_file()
    return {"weights": "present" if present else "missing", "path": str(path),
            "url": info.weights.url, "present": present}


def _describe(spec, cache_dir: Path | None) -> dict[str, Any]:
    return {
        "name": spec.name,
        "family": spec.family,
        "input_size": list(spec.input_size) if spec.input_size else None,
        "classes": [c.label for c in spec.classes],
        "batchable": spec.batchable,
        "description": spec.description,
        **_weights_status(spec.name, cache_dir),
    }


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from carlink.zoo.registry import list_specs

    rows = [_describe(s, args.cache_dir) for s in list_specs()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("name", "family", "input", "classes", "batch", "weights")
    for r in rows:
        size = "x".join(map(str, r["input_size"])) if r["input_size"] else "native"
        table.add_row(r["name"], r["family"], size, ",".join(r["classes"]) or "-",
                      "yes" if r["batchable"] else "no", r["weights"])
    Console(width=140).print(table)
    return 0


def _info(args: argparse.Namespace) -> int:
    d = _describe(_spec(args.name), args.cache_dir)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    for key, value in d.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key:12} {value}")
    if d["weights"] == "missing":
        print(f"\nweights missing: run `carlink models fetch {d['name']}` where a network exists, "
              "pass a weights file, or serve with --allow-untrained (random weights)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from carlink.zoo.torchvision_models import TORCHVISION_MODELS
    from carlink.zoo.weights import FetchError, fetch_weights

    spec = _spec(args.name)
    info = TORCHVISION_MODELS.get(spec.name)
    if info is None:
        print(f"{spec.name}: weights are built in ({spec.family}); nothing to fetch")
        return 0
    try:
        result = fetch_weights(spec.name, info.weights, cache_dir=args.cache_dir,
                               mirror=args.mirror, progress=args.progress)
    except FetchError as exc:
        raise CommandError(str(exc)) from exc
    if result.already_present:
        print(f"{spec.name}: already present at {result.path}")
    else:
        print(f"{spec.name}: downloaded {result.url} to {result.path}")
    return 0
