"""The checked-in generated code is exactly what the .proto compiles to."""

from __future__ import annotations

import pytest

from carlink.proto import generate


def test_generated_code_matches_the_proto(tmp_path):
    pytest.importorskip("grpc_tools")
    written = generate.generate(tmp_path)
    assert [p.name for p in written] == list(generate.GENERATED)
    for path in written:
        checked_in = generate.PROTO_DIR / path.name
        assert checked_in.read_bytes() == path.read_bytes(), (
            f"{checked_in} is stale: run `python -m carlink.proto.generate`")


def test_generated_service_has_the_three_rpcs():
    from carlink.proto import inference_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["Inference"]
    assert service.full_name == "carlink.v1.Inference"
    assert {m.name for m in service.methods} == {"Infer", "ListModels", "Ping"}
