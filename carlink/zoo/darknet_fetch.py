"""`carlink models fetch` for the Darknet family: the authors' files at pinned commits, full sha256.

Files are downloaded into a staging folder inside the models directory and moved into
<models_dir>/<network>/ only once every file's sha256 is the official one, so a failed or
tampered download leaves nothing behind that a later run could load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from carlink.zoo.darknet import DarknetNetwork
from carlink.zoo.models_dir import check_models_dir
from carlink.zoo.weights import FetchError, check_url_scheme

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchedFile:
    name: str
    path: Path
    url: str | None  # None: already present with the right sha256


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def file_url(network: DarknetNetwork, file: str, mirror: str | None) -> str:
    """The authors' raw URL, or <mirror>/<network>/<file> (a mirror laid out as a models dir)."""
    if mirror is None:
        return network.source_url(file)
    return f"{mirror.rstrip('/')}/{network.name}/{file}"


def _download(url: str, dest: Path, expected_sha: str, timeout: float) -> None:
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            for block in iter(lambda: response.read(_CHUNK), b""):
                digest.update(block)
                out.write(block)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"downloading {url} failed: {reason}. Without network access, copy the files by hand "
                         "(layout as in `carlink models list`) or use --mirror URL") from exc
    if digest.hexdigest() != expected_sha:
        raise FetchError(f"{url}: sha256 {digest.hexdigest()} is not the official file's {expected_sha}; "
                         "nothing was installed")


def fetch_network(
    network: DarknetNetwork,
    models_dir: Path,
    *,
    mirror: str | None = None,
    allow_http: bool = False,
    timeout: float = 60.0,
    report: Callable[[str], None] | None = None,
) -> list[FetchedFile]:
    """Make <models_dir>/<network>/ hold the official files; download only those missing or wrong."""
    urls = {f: file_url(network, f, mirror) for f in network.files}
    for url in urls.values():
        check_url_scheme(url, allow_http)
    check_models_dir(models_dir)
    folder = models_dir / network.name
    todo = [f for f in network.files
            if not ((folder / f).is_file() and sha256_of(folder / f) == network.sha256[f])]
    result = [FetchedFile(f, folder / f, None) for f in network.files if f not in todo]
    if not todo:
        return result
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{network.name}.", suffix=".partial", dir=models_dir))
    except OSError as exc:
        raise FetchError(f"cannot create the models directory {models_dir}: {exc.strerror or exc}") from exc
    try:
        for f in todo:
            if report:
                report(f"downloading {urls[f]}")
            _download(urls[f], staging / f, network.sha256[f], timeout)
        folder.mkdir(exist_ok=True)
        for f in todo:  # every file checked: only now does anything land in the network's folder
            os.replace(staging / f, folder / f)
            result.append(FetchedFile(f, folder / f, urls[f]))
    except OSError as exc:
        raise FetchError(f"cannot write into {folder}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(result, key=lambda r: network.files.index(r.name))
