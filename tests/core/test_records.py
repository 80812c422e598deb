"""ModelRef, the provenance in every record's `models` and run.json's `models`: a GGUF model's
ref is written as before; an endpoint model's names its server, credential-free."""

from __future__ import annotations

from gra_local.core.records import ENDPOINT_REF_FIELDS, ModelRef


def test_a_gguf_models_ref_has_no_endpoint_fields() -> None:
    ref = ModelRef(name="smol", sha256="a" * 64, quantization="Q4_1", n_gpu_layers=0)
    assert ref.model_dump(mode="json") == {"name": "smol", "sha256": "a" * 64,
                                           "quantization": "Q4_1", "n_gpu_layers": 0}


def test_an_endpoint_models_ref_names_its_server_and_reads_back() -> None:
    ref = ModelRef(name="judge", endpoint="http://gpu-box:8080/v1", server="llama.cpp",
                   server_version="b5000", served_model="qwen2.5-7b")
    dumped = ref.model_dump(mode="json")
    assert dumped["sha256"] is None and dumped["quantization"] is None
    assert {k: dumped[k] for k in ENDPOINT_REF_FIELDS} == {
        "endpoint": "http://gpu-box:8080/v1", "server": "llama.cpp", "server_version": "b5000",
        "served_model": "qwen2.5-7b"}
    assert ModelRef.model_validate(dumped) == ref
    # a record written before these fields existed still reads
    assert ModelRef.model_validate({"name": "old", "sha256": "b" * 64}).endpoint is None
