"""The checked-in generated code is exactly what the .proto compiles to."""

from __future__ import annotations

import pytest

from carlink.datasets import generate_protos
from carlink.proto import generate


@pytest.mark.parametrize("protos", [generate.PROTOS, generate_protos.PROTOS], ids=["inference", "datasets"])
def test_generated_code_matches_the_proto(protos, tmp_path):
    pytest.importorskip("grpc_tools")
    assert protos.stale(tmp_path) == [], (
        f"generated modules in {protos.proto_dir} are stale: run python -m "
        f"{protos.virtual_dir.replace('/', '.')}.{'generate' if protos.grpc else 'generate_protos'}")


def test_a_changed_proto_is_detected_as_stale(tmp_path):
    pytest.importorskip("grpc_tools")
    import shutil
    copy = tmp_path / "src"
    shutil.copytree(generate.PROTOS.proto_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
    proto = copy / "inference.proto"
    proto.write_text(proto.read_text() + "\nmessage Extra { int32 x = 1; }\n")
    from carlink.protogen import ProtoSet
    edited = ProtoSet(copy, "carlink/proto", ("inference.proto",), grpc=True)
    assert "inference_pb2.py" in edited.stale(tmp_path / "out")


def test_generated_service_has_the_three_rpcs():
    from carlink.proto import inference_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["Inference"]
    assert service.full_name == "carlink.v1.Inference"
    assert {m.name for m in service.methods} == {"Infer", "ListModels", "Ping"}
