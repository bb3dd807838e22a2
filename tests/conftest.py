"""Shared fixtures. Real data comes from ../shared/data, found through CARLINK_TEST_DATA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _data_root() -> Path | None:
    env = os.environ.get("CARLINK_TEST_DATA")
    if env:
        root = Path(env)
        if not root.is_dir():
            # Set but wrong: fail loudly rather than silently skipping the real-data tests.
            raise pytest.UsageError(f"CARLINK_TEST_DATA={env!r} is not a directory")
        return root
    return _DEFAULT_DATA if _DEFAULT_DATA.is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def _models_dir_from_test_data():
    """Code under test finds the real Darknet files in $CARLINK_TEST_DATA/models (the zoo's
    models directory is CARLINK_MODELS_DIR), unless the environment already names one."""
    root = _data_root()
    models = root / "models" if root is not None else None
    if models is None or not models.is_dir() or os.environ.get("CARLINK_MODELS_DIR"):
        yield
        return
    os.environ["CARLINK_MODELS_DIR"] = str(models)
    try:
        yield
    finally:
        os.environ.pop("CARLINK_MODELS_DIR", None)


@pytest.fixture(scope="session")
def models_dir(data_dir: Path) -> Path:
    """The real Darknet detectors (../shared/data/models)."""
    return data_dir / "models"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Root of the real test data (../shared/data). Skips when unset and absent."""
    root = _data_root()
    if root is None:
        pytest.skip("real test data not found: set CARLINK_TEST_DATA to the shared/data folder")
    return root


@pytest.fixture(scope="session")
def waymo_frame_file(data_dir: Path) -> Path:
    return data_dir / "waymo" / "v1_frames" / "pvps_data_one_frame.tfrecord"


@pytest.fixture(scope="session")
def waymo_labels_only_file(data_dir: Path) -> Path:
    return data_dir / "waymo" / "v1_frames" / "mmdet3d_val.tfrecord"


@pytest.fixture(scope="session")
def tf_example_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "waymo" / "udacity_c1_front_1hz").glob("*.tfrecord"))


@pytest.fixture(scope="session")
def bandwidth_dir(data_dir: Path) -> Path:
    return data_dir / "bandwidth"


@pytest.fixture(scope="module")
def two_torch_threads():
    """torch on two threads for a module's tests (the machine's cores are shared), then as before."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
