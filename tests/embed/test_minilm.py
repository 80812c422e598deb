"""The numpy all-MiniLM-L6-v2 against sentence-transformers, and its typed errors.

REF_* were computed once with sentence-transformers 6.2.0 (torch 2.14.1, CPU) from the
same model files: `SentenceTransformer(model_dir).encode(SENTENCES)`. Our output matched
them to 1.5e-7 on every dimension when they were recorded.
"""

from __future__ import annotations

import json
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import gra_local.embed.minilm as minilm_module
from gra_local.core.errors import EmbedderError
from gra_local.embed.minilm import MiniLMEmbedder, read_safetensors
from gra_local.embed.minilm_files import FILES, WEIGHTS_SIZE

SENTENCES = [
    "Write a Python function that reverses a string.",
    "Write a Python function to reverse a string.",
    "Implement a routine in Python which returns the input text backwards.",
    "What is the capital of France?",
    "Explain the difference between TCP and UDP, and give one example application for each protocol.",
    "Café prices in Zürich rose 12% — why?",
    "The quick brown fox jumps over the lazy dog. " * 40,  # 402 tokens: truncated to 256
]
REF_FIRST8 = [
    [0.0097682, 0.1038146, 0.0329456, 0.0221140, -0.1453159, -0.0850876, 0.0193212, 0.0352872],
    [0.0294450, 0.1119403, 0.0371434, 0.0229854, -0.1376131, -0.0841919, 0.0172558, 0.0362169],
    [-0.0439609, 0.1199872, -0.0144848, 0.0400357, -0.1265967, -0.0210184, 0.0180140, -0.0089394],
    [0.0820481, 0.0360555, -0.0038929, -0.0048811, 0.0256512, -0.0571435, 0.0121916, 0.0046789],
    [-0.0102614, 0.0323165, 0.0038389, -0.0866358, -0.0004762, 0.0103738, 0.0097548, 0.0880359],
    [0.0550605, 0.0315606, 0.0610865, 0.0433432, 0.0873600, 0.0168654, -0.0108472, 0.0560078],
    [0.0622781, -0.0578629, 0.0723265, -0.0059594, -0.0453872, 0.0057615, -0.0239358, -0.0729518],
]
REF_COSINES = {
    (0, 1): 0.9928307, (0, 2): 0.7415586, (0, 3): 0.1191481, (0, 4): 0.0404563,
    (0, 5): -0.0619212, (0, 6): -0.0405690, (1, 2): 0.7321331, (1, 3): 0.1330939,
    (1, 4): 0.0395547, (1, 5): -0.0524223, (1, 6): -0.0365913, (2, 3): 0.1200530,
    (2, 4): 0.0113920, (2, 5): -0.0574260, (2, 6): 0.0313872, (3, 4): 0.0993099,
    (3, 5): 0.1957808, (3, 6): -0.0274281, (4, 5): 0.0407944, (4, 6): 0.0530742,
    (5, 6): 0.0195723,
}
TOLERANCE = 2e-5  # float32 summation order differs between BLAS builds; observed 1.5e-7


def test_matches_sentence_transformers(minilm: MiniLMEmbedder) -> None:
    vecs = minilm.embed(SENTENCES)
    assert vecs.shape == (len(SENTENCES), 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(vecs[:, :8], np.array(REF_FIRST8), atol=TOLERANCE, rtol=0)
    cos = vecs @ vecs.T
    for (i, j), expected in REF_COSINES.items():
        assert cos[i, j] == pytest.approx(expected, abs=TOLERANCE), (i, j)


def test_rows_are_unit_and_independent_of_batching(minilm: MiniLMEmbedder) -> None:
    together = minilm.embed(SENTENCES)
    alone = np.vstack([minilm.embed([s]) for s in SENTENCES])  # no padding at all
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)
    assert (minilm.name, minilm.dim, minilm.sha256) == ("all-MiniLM-L6-v2", 384, FILES["model.safetensors"])


def test_long_batches_stay_small_in_memory(minilm: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    # 24 texts of 256 tokens: whole-batch attention scores and 8192-token activations
    # held ~300 MB at once (run.json's main peak RSS); now ~45 MB. numpy reports to tracemalloc.
    texts = [SENTENCES[-1] + str(i) for i in range(24)]
    tracemalloc.start()
    try:
        vecs = minilm.embed(texts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MB"
    monkeypatch.setattr(minilm_module, "ATTN_BYTES", 1)  # attention one sequence at a time
    np.testing.assert_allclose(minilm.embed(texts), vecs, atol=1e-6, rtol=0)


def test_text_beyond_256_tokens_is_ignored(minilm: MiniLMEmbedder) -> None:
    long = SENTENCES[-1]
    a, b = minilm.embed([long, long + " Completely different words about astronomy follow here."])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_missing_model_dir_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match=r"config\.json.*pull-embedder"):
        MiniLMEmbedder(tmp_path / "nowhere")


def _model_dir_without_weights(tmp_path: Path, source: Path) -> Path:
    target = tmp_path / "model"
    for name in FILES:
        if name != "model.safetensors":
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / name, target / name)
    return target


def test_truncated_or_corrupt_weights_name_the_file(minilm: MiniLMEmbedder, tmp_path: Path) -> None:
    model = _model_dir_without_weights(tmp_path, minilm.model_dir)
    weights = model / "model.safetensors"
    with pytest.raises(EmbedderError, match=r"model\.safetensors: missing"):
        MiniLMEmbedder(model)
    weights.write_bytes(b"\x00" * 100)
    with pytest.raises(EmbedderError, match=r"model\.safetensors: 100 bytes, expected"):
        MiniLMEmbedder(model)
    with open(weights, "wb") as fh:  # right size, garbage header (sparse: cheap to write)
        fh.write(struct.pack("<Q", 10) + b"not json!!")
        fh.truncate(WEIGHTS_SIZE)
    with pytest.raises(EmbedderError, match=r"model\.safetensors: not a readable safetensors"):
        MiniLMEmbedder(model)


def test_read_safetensors_round_trip(tmp_path: Path) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}
    raw = json.dumps(header).encode()
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + a.tobytes())
    np.testing.assert_array_equal(read_safetensors(path)["a"], a)
    header["a"]["data_offsets"] = [0, 48]  # points past the end of the file
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + a.tobytes())
    with pytest.raises(EmbedderError, match="outside the file"):
        read_safetensors(path)
