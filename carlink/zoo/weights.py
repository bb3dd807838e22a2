"""Where model weights come from: an explicit file or the torch hub cache. Never the network,
except through `fetch_weights` (``carlink models fetch``), which a person runs on purpose."""

from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path


class WeightsNotFoundError(FileNotFoundError):
    """No weights file for a model that needs one. The message says where it looked."""

    def __init__(self, model: str, looked_in: list[Path], *, explicit: bool = False) -> None:
        self.model = model
        self.looked_in = list(looked_in)
        where = ", ".join(str(p) for p in self.looked_in)
        if explicit:
            hint = "check the path given as weights"
        else:
            hint = (
                f"run `carlink models fetch {model}` where a network exists (or copy the official "
                "file there), pass a weights file explicitly, or allow random weights with "
                "--allow-untrained (allow_untrained=True)"
            )
        super().__init__(f"no weights for model {model!r}: looked for {where}; {hint}")

    def __str__(self) -> str:  # FileNotFoundError would print "[Errno None] ..." otherwise
        return self.args[0]


class FetchError(RuntimeError):
    """Downloading official weights failed: network, HTTP status or checksum."""


@dataclass(frozen=True)
class WeightsSource:
    """The official weights of a model: its download URL and the file name in the hub cache."""

    url: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str | None:
        # torchvision names its files <name>-<first hex digits of the sha256>.pth
        stem = self.file_name.rsplit(".", 1)[0]
        tail = stem.rsplit("-", 1)[-1]
        is_hex = len(tail) >= 6 and all(c in "0123456789abcdef" for c in tail)
        return tail if "-" in stem and is_hex else None


def check_url_scheme(url: str, allow_http: bool) -> None:
    """Refuse plain http:// unless allowed: a file fetched in clear can be altered in transit."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "https" or (scheme == "http" and allow_http):
        return
    if scheme == "http":
        raise FetchError(f"refusing plain-HTTP URL {url}: the files could be altered in transit (the sha256 "
                         "check would then refuse them); use https, or pass --allow-http for a trusted mirror")
    raise FetchError(f"unsupported URL {url}: expected https:// (or http:// with --allow-http)")


def hub_checkpoint_dir(cache_dir: str | Path | None = None) -> Path:
    """The folder torch.hub keeps downloaded checkpoints in (or `cache_dir` where given)."""
    if cache_dir is not None:
        return Path(cache_dir)
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def locate_weights(
    model: str,
    source: WeightsSource,
    explicit: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """The weights file to load: `explicit` where given (it must exist), else the hub cache."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(model, [path], explicit=True)
        return path
    path = hub_checkpoint_dir(cache_dir) / source.file_name
    if not path.is_file():
        raise WeightsNotFoundError(model, [path])
    return path


@dataclass(frozen=True)
class FetchResult:
    path: Path
    already_present: bool
    url: str | None  # None when nothing was downloaded


def fetch_weights(
    model: str,
    source: WeightsSource,
    cache_dir: str | Path | None = None,
    mirror: str | None = None,
    progress: bool = False,
    allow_http: bool = False,
) -> FetchResult:
    """Download the official weights into the cache unless the file is there already.

    `mirror` replaces the URL's folder (e.g. an internal HTTP server for cars without internet
    access); the file name and its checksum stay those of the official file. A plain http://
    URL is refused unless ``allow_http``. torchvision publishes only the first hex digits of each
    file's sha256 (in its name), so that prefix is what can be checked here.
    """
    from torch.hub import download_url_to_file

    dest_dir = hub_checkpoint_dir(cache_dir)
    dest = dest_dir / source.file_name
    if dest.is_file():
        return FetchResult(dest, already_present=True, url=None)
    url = source.url if mirror is None else f"{mirror.rstrip('/')}/{source.file_name}"
    check_url_scheme(url, allow_http)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create cache folder {dest_dir} for {model}: {exc}") from exc
    try:
        download_url_to_file(url, os.fspath(dest), hash_prefix=source.sha256_prefix, progress=progress)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"downloading {model} weights from {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"downloading {model} weights from {url} failed: {reason}. Without network access, "
            f"copy {source.file_name} into {dest_dir} by hand (or use --mirror URL)"
        ) from exc
    except RuntimeError as exc:  # torch.hub's checksum mismatch; it removes the partial file
        raise FetchError(f"downloaded {model} weights from {url} are not the official file: {exc}") from exc
    return FetchResult(dest, already_present=False, url=url)
