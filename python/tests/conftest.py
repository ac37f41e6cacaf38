"""Shared helpers: the repository's golden files (read with NumPy only) and timing."""
import json
import pathlib
import struct

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def read_safetensors(path):
    """{name: float32 array} of a safetensors file (8-byte header size, JSON header, raw data)."""
    raw = pathlib.Path(path).read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    body = raw[8 + size:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(body[begin:end], dtype=np.float32).reshape(info["shape"])
    return out


@pytest.fixture(scope="session")
def trl_goldens():
    """TRL 1.16's own outputs (tools/rl_peer_goldens.py): the manifest's cases and their tensors."""
    manifest = json.loads((DATA / "rl_peers" / "trl.json").read_text())
    tensors = read_safetensors(DATA / "rl_peers" / "trl.safetensors")
    return manifest, tensors
