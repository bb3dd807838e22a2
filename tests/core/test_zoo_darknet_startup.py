"""The daemon and the cloud server refuse to start on missing or bad Darknet files (exit code 2,
the zoo's message naming the file, the layer and what was expected), as real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onboard_testkit import write_profile

NET = "yolo-fastest-1.1"
MODEL = "yolo-fastest-1.1-320x320"


@pytest.fixture()
def bad_models_dir(models_dir: Path, tmp_path: Path) -> Path:
    """A models directory whose yolo-fastest-1.1 weights are cut short."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / NET, root / NET)
    weights = root / NET / f"{NET}.weights"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:700_000])
    return root


def _carlink(*args: str, models_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CARLINK_MODELS_DIR": str(models_dir)}
    return subprocess.run([sys.executable, "-m", "carlink.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_daemon_refuses_bad_weights_in_check_config_and_run(tmp_path: Path, bad_models_dir: Path,
                                                            models_dir: Path) -> None:
    profile = write_profile(tmp_path / "p.json", cameras=("FRONT",), onboard_model=MODEL)
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\nprofile = "{profile.name}"\ndevice = "cpu"\n[source]\nkind = "synthetic"\n')
    weights = bad_models_dir / NET / f"{NET}.weights"
    for command in (["check-config", str(config)], ["run", "--config", str(config)]):
        proc = _carlink("onboard", *command, models_dir=bad_models_dir)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr
        assert err.startswith("carlink: error: ") and "Traceback" not in err
        assert str(weights) in err and "expected 1384268" in err and "layer " in err
    # the same config with the real files passes check-config
    proc = _carlink("onboard", "check-config", str(config), models_dir=models_dir)
    assert proc.returncode == 0, proc.stderr
    assert f"on-car {MODEL}" in proc.stdout
    # and with no files at all, the message says how to get them
    proc = _carlink("onboard", "check-config", str(config), models_dir=tmp_path / "nothing")
    assert proc.returncode == 2 and f"carlink models fetch {NET}" in proc.stderr


def test_cloud_server_refuses_bad_weights(bad_models_dir: Path) -> None:
    proc = _carlink("cloud", "serve", "--models", MODEL, "--insecure", "--port", "0", models_dir=bad_models_dir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"carlink: error: cannot load model '{MODEL}'")
    assert str(bad_models_dir / NET / f"{NET}.weights") in proc.stderr and "expected 1384268" in proc.stderr


def test_cloud_serves_darknet_with_the_torch_backend_by_default(waymo_frame_file: Path) -> None:
    """A real loopback server: the variant is served by the PyTorch backend (batched), detections
    come back in the pixels of the image sent; a corrupt image is INVALID_ARGUMENT and serving goes on."""
    import grpc

    from carlink.cloud.config import ServerConfig
    from carlink.cloud.server import load_detectors
    from carlink.detection import WaymoClass
    from cloud_testkit import front_jpeg, infer_request, running_server, stub_for

    config = ServerConfig(models=(MODEL,), port=0, insecure=True, device="cpu", max_batch=4)
    assert config.backend == "torch"
    detectors = load_detectors(config)
    assert [type(d).__name__ for d in detectors[MODEL]] == ["TorchDarknetDetector"]
    jpeg = front_jpeg(waymo_frame_file)
    with running_server(config, detectors=detectors) as server, stub_for(server) as stub:
        reply = stub.Infer(infer_request(jpeg, model=MODEL), timeout=60)
        assert reply.model == MODEL and reply.decoded_size.width == 1920
        assert reply.detections and {d.cls for d in reply.detections} <= {
            int(WaymoClass.VEHICLE), int(WaymoClass.PEDESTRIAN), int(WaymoClass.CYCLIST)}
        with pytest.raises(grpc.RpcError) as info:
            stub.Infer(infer_request(jpeg[: len(jpeg) // 3] + b"\0" * 64, model=MODEL), timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert stub.Infer(infer_request(jpeg, model=MODEL), timeout=60).detections
    opencv = load_detectors(config.model_copy(update={"backend": "opencv"}))
    assert type(opencv[MODEL][0]).__name__ == "OpenCvDarknetDetector"
