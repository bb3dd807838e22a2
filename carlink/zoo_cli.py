"""``carlink models``: list, describe and fetch the models of the zoo shared by car and cloud."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from carlink.cli import CommandError


def _where_weights_are(p: argparse.ArgumentParser) -> None:
    """--cache-dir and --models-dir: where `list`, `info` and `fetch` look for (or put) weights."""
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="torchvision checkpoint folder (default: torch hub's checkpoints folder)")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="Darknet models directory (default: $CARLINK_MODELS_DIR, else ~/.cache/carlink/models)")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "models", help="list, describe and fetch the models of the zoo",
        description="The model zoo shared by car and cloud: the Darknet family (Yolo-Fastest 1.1, "
        "Yolo-Fastest 1.1-XL, MobileNetV2-YOLOv3-Nano at five input sizes; files from the models "
        "directory: --models-dir, else $CARLINK_MODELS_DIR, else ~/.cache/carlink/models), OpenCV "
        "HOG pedestrian detectors, torchvision COCO detectors (weights from a file or the torch hub "
        "cache) and a no-op model for benchmarks. Nothing is downloaded implicitly.",
    )
    p.set_defaults(parser=p)
    msub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")

    lp = msub.add_parser("list", help="list every model with its family, classes and weights status",
                         description="List the zoo's models and whether their weights are available.")
    _where_weights_are(lp)
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lp.set_defaults(func=_list)

    ip = msub.add_parser("info", help="describe one model and where its weights are looked for",
                         description="Describe one model: spec, weights source and local status.")
    ip.add_argument("name", metavar="NAME", help="model name (see `carlink models list`)")
    _where_weights_are(ip)
    ip.add_argument("--json", action="store_true", help="print JSON instead of text")
    ip.set_defaults(func=_info)

    fp = msub.add_parser(
        "fetch", help="download a model's official files into the models directory or cache (needs network access)",
        description="Darknet (NAME a variant such as yolo-fastest-1.1-320x320, or a network such as "
        "yolo-fastest-1.1): download the cfg, weights, coco.names and LICENSE from the authors' "
        "GitHub repository at the pinned commit into <models dir>/<network>/, checking each file's "
        "full sha256; nothing is installed unless every file matches. torchvision: download the "
        "official weights into the torch hub checkpoint folder (or --cache-dir), checking the "
        "sha256 prefix. Files already present and correct are kept. HOG and noop need no fetch.",
    )
    fp.add_argument("name", metavar="NAME", help="model or Darknet network name (see `carlink models list`)")
    _where_weights_are(fp)
    fp.add_argument("--allow-http", action="store_true",
                    help="accept a plain http:// --mirror (the sha256 check still applies)")
    fp.add_argument("--mirror", default=None, metavar="URL",
                    help="download from this folder URL instead of the official site (torchvision: "
                    "<URL>/<file>; Darknet: <URL>/<network>/<file>, a models directory served over "
                    "HTTPS; for fleets without internet access)")
    fp.add_argument("--progress", action="store_true", help="show a download progress bar")
    fp.set_defaults(func=_fetch)

    bp = msub.add_parser(
        "bench", help="measure runtime per variant and batch size on random input (no data needed)",
        description="Time each model's detect_batch on random images of its input size: p50/p99 "
        "milliseconds per image, per batch size, with the hardware named. -o writes the profiler's "
        "runtime table (CSV: model,resize,runtime_ms_p50,runtime_ms_p99,batch,backend,device,hardware).",
    )
    bp.add_argument("names", nargs="*", metavar="NAME",
                    help="variants or Darknet networks (a network means its five sizes); default: every Darknet variant")
    bp.add_argument("--backend", default="auto", choices=["auto", "opencv", "torch"],
                    help="auto: torch on a CUDA device, else opencv")
    bp.add_argument("--batch", default="1", type=_batches, metavar="N[,N...]", help="batch sizes (default 1)")
    bp.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (torch backend)")
    bp.add_argument("--threads", type=int, default=None, metavar="N",
                    help="CPU threads for OpenCV and torch alike (default: the libraries' own)")
    bp.add_argument("--iterations", type=int, default=20, metavar="N", help="timed calls per row (default 20)")
    bp.add_argument("--models-dir", type=Path, default=None,
                    help="Darknet models directory (default: $CARLINK_MODELS_DIR, else ~/.cache/carlink/models)")
    bp.add_argument("-o", "--output", type=Path, default=None, metavar="CSV", help="write the runtime table here")
    bp.set_defaults(func=_bench)


def _batches(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated batch sizes, e.g. 1,8") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes must be integers >= 1")
    return values


def _spec(name: str):
    from carlink.zoo.registry import UnknownModelError, get_spec

    try:
        return get_spec(name)
    except UnknownModelError as exc:
        raise CommandError(str(exc)) from exc


def _darknet_status(network: str, models_dir: Path | None, seen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A network's files: present (and consistent), missing or bad; checked once per network."""
    from carlink.zoo.darknet import NETWORKS, load_network_files
    from carlink.zoo.errors import ModelFilesMissingError, ZooError
    from carlink.zoo.models_dir import resolve_models_dir

    if network not in seen:
        net = NETWORKS[network]
        folder = resolve_models_dir(models_dir) / network
        status: dict[str, Any] = {"weights": "present", "path": str(folder),
                                  "url": net.source_url(net.weights_file), "present": True, "problem": None}
        try:
            load_network_files(net, models_dir=models_dir)
        except ModelFilesMissingError:
            status.update(weights="missing", present=False)
        except ZooError as exc:
            status.update(weights="bad", present=False, problem=str(exc))
        seen[network] = status
    return seen[network]


def _weights_status(name: str, cache_dir: Path | None, models_dir: Path | None = None,
                    seen: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Where a model's weights come from and whether they are here, without building the model."""
    from carlink.zoo.darknet import VARIANTS
    from carlink.zoo.torchvision_models import TORCHVISION_MODELS
    from carlink.zoo.weights import hub_checkpoint_dir

    if name in VARIANTS:
        return _darknet_status(VARIANTS[name].network.name, models_dir, {} if seen is None else seen)
    info = TORCHVISION_MODELS.get(name)
    if info is None:
        return {"weights": "built-in", "path": None, "url": None, "present": True}
    path = hub_checkpoint_dir(cache_dir) / info.weights.file_name
    present = path.is_file()
    return {"weights": "present" if present else "missing", "path": str(path),
            "url": info.weights.url, "present": present}


def _describe(spec, cache_dir: Path | None, models_dir: Path | None = None,
              seen: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "name": spec.name,
        "family": spec.family,
        "input_size": list(spec.input_size) if spec.input_size else None,
        "classes": [c.label for c in spec.classes],
        "batchable": spec.batchable,
        "description": spec.description,
        **_weights_status(spec.name, cache_dir, models_dir, seen),
    }


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from carlink.zoo.registry import list_specs

    from carlink.zoo.models_dir import models_dir_source, resolve_models_dir

    seen: dict[str, dict[str, Any]] = {}
    rows = [_describe(s, args.cache_dir, args.models_dir, seen) for s in list_specs()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"models directory: {resolve_models_dir(args.models_dir)} ({models_dir_source(args.models_dir)})")
    table = Table("name", "family", "input", "classes", "batch", "weights")
    for r in rows:
        size = "x".join(map(str, r["input_size"])) if r["input_size"] else "native"
        table.add_row(r["name"], r["family"], size, ",".join(r["classes"]) or "-",
                      "yes" if r["batchable"] else "no", r["weights"])
    Console(width=140).print(table)
    return 0


def _info(args: argparse.Namespace) -> int:
    d = _describe(_spec(args.name), args.cache_dir, args.models_dir)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    for key, value in d.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        print(f"{key:12} {value}")
    if d["weights"] == "missing" and d["family"] == "darknet":
        print(f"\nfiles missing: run `carlink models fetch {d['name']}` where a network exists, or copy "
              "the network's folder into the models directory")
    elif d["weights"] == "missing":
        print(f"\nweights missing: run `carlink models fetch {d['name']}` where a network exists, "
              "pass a weights file, or serve with --allow-untrained (random weights)")
    return 0


def _fetch_darknet(network: str, args: argparse.Namespace) -> int:
    from carlink.zoo.darknet import NETWORKS
    from carlink.zoo.darknet_fetch import fetch_network
    from carlink.zoo.errors import ZooError
    from carlink.zoo.models_dir import resolve_models_dir
    from carlink.zoo.weights import FetchError

    root = resolve_models_dir(args.models_dir)
    try:
        files = fetch_network(NETWORKS[network], root, mirror=args.mirror, allow_http=args.allow_http,
                              report=print if args.progress else None)
    except (FetchError, ZooError) as exc:
        raise CommandError(f"{network}: {exc}") from None
    for f in files:
        state = "already present" if f.url is None else f"downloaded {f.url}"
        print(f"{network}: {f.name}: {state} -> {f.path}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from carlink.zoo.darknet import NETWORKS, VARIANTS
    from carlink.zoo.torchvision_models import TORCHVISION_MODELS
    from carlink.zoo.weights import FetchError, fetch_weights

    if args.name in NETWORKS or args.name in VARIANTS:
        return _fetch_darknet(args.name if args.name in NETWORKS else VARIANTS[args.name].network.name, args)
    spec = _spec(args.name)
    info = TORCHVISION_MODELS.get(spec.name)
    if info is None:
        print(f"{spec.name}: weights are built in ({spec.family}); nothing to fetch")
        return 0
    try:
        result = fetch_weights(spec.name, info.weights, cache_dir=args.cache_dir,
                               mirror=args.mirror, progress=args.progress, allow_http=args.allow_http)
    except FetchError as exc:
        raise CommandError(str(exc)) from exc
    if result.already_present:
        print(f"{spec.name}: already present at {result.path}")
    else:
        print(f"{spec.name}: downloaded {result.url} to {result.path}")
    return 0


def _bench_names(names: list[str]) -> list[str]:
    from carlink.zoo.darknet import NETWORKS, VARIANTS

    if not names:
        return list(VARIANTS)
    out: list[str] = []
    for name in names:
        if name in NETWORKS:
            out += [v.name for v in VARIANTS.values() if v.network.name == name]
        else:
            _spec(name)
            out.append(name)
    return out


def _bench(args: argparse.Namespace) -> int:
    from carlink.zoo.bench import BenchRow, run_bench, write_csv
    from carlink.zoo.devices import DeviceUnavailableError
    from carlink.zoo.errors import ZooError

    if args.iterations < 1:
        raise CommandError(f"--iterations {args.iterations}: expected at least 1")
    if args.threads is not None and args.threads < 1:
        raise CommandError(f"--threads {args.threads}: expected at least 1")
    names = _bench_names(args.names)
    print(f"{'model':34} {'backend':7} {'device':6} {'batch':>5} {'p50 ms/img':>11} {'p99 ms/img':>11}  hardware")

    def report(r: BenchRow) -> None:
        print(f"{r.model:34} {r.backend:7} {r.device:6} {r.batch:5d} {r.p50_ms:11.2f} {r.p99_ms:11.2f}  {r.hardware}",
              flush=True)

    try:
        rows = run_bench(names, backend=args.backend, batches=args.batch, device=args.device, threads=args.threads,
                         iterations=args.iterations, models_dir=args.models_dir, report=report)
    except (ZooError, DeviceUnavailableError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    if args.output is not None:
        try:
            write_csv(rows, args.output)
        except OSError as exc:
            raise CommandError(f"-o {args.output}: cannot write: {exc.strerror or exc}") from None
        print(f"runtime table: {args.output} ({len(rows)} rows)")
    return 0
