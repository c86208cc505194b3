"""Helpers of the data-safety tests (test_safety.py, test_inspect_gate.py): small models made
from the synthetic fixtures, NaN/Inf planted at a known element of a GGUF or safetensors
tensor, and a snapshot of a folder to compare the disk before and after a failed command."""
from __future__ import annotations

import json
import os
import shutil
import stat
import struct
from pathlib import Path

import numpy as np

TEMP_TAG = ".smolq-tmp-"


# --- GGUF -----------------------------------------------------------------------------------

def gguf_tensor(path: Path, name: str):
    import gguf
    r = gguf.GGUFReader(str(path))
    for t in r.tensors:
        if t.name == name:
            return t
    raise KeyError(name)


def plant_in_gguf(path: Path, name: str, row: int, col: int, value: float) -> None:
    """Set element (row, col) of a plain-float (F32/F16/BF16) tensor of `path` to `value`."""
    import gguf
    t = gguf_tensor(path, name)
    ncols = int(t.shape[0])
    idx = row * ncols + col
    kind = t.tensor_type
    if kind == gguf.GGMLQuantizationType.F32:
        raw, size = struct.pack("<f", value), 4
    elif kind == gguf.GGMLQuantizationType.F16:
        raw, size = np.array([value], dtype=np.float16).tobytes(), 2
    elif kind == gguf.GGMLQuantizationType.BF16:
        raw, size = struct.pack("<I", struct.unpack("<I", struct.pack("<f", value))[0] >> 16)[:2], 2
    else:
        raise ValueError(f"{name}: {kind.name} is not a plain float type")
    with open(path, "r+b") as f:
        f.seek(int(t.data_offset) + idx * size)
        f.write(raw)


def plant_q8_0_scale(path: Path, name: str, block: int, value: float) -> None:
    """Set the f16 scale of Q8_0 block `block` of tensor `name` (34-byte blocks, scale first)."""
    t = gguf_tensor(path, name)
    with open(path, "r+b") as f:
        f.seek(int(t.data_offset) + block * 34)
        f.write(np.array([value], dtype=np.float16).tobytes())


# --- safetensors ----------------------------------------------------------------------------

def st_header(path: Path) -> tuple[dict, int]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), n


def plant_in_safetensors(path: Path, name: str, row: int, col: int, value: float) -> None:
    h, n = st_header(path)
    info = h[name]
    cols = info["shape"][-1]
    idx = row * cols + col
    dt = info["dtype"]
    if dt == "F32":
        raw, size = struct.pack("<f", value), 4
    elif dt == "F16":
        raw, size = np.array([value], dtype=np.float16).tobytes(), 2
    else:  # BF16
        raw, size = struct.pack("<I", struct.unpack("<I", struct.pack("<f", value))[0] >> 16)[:2], 2
    with open(path, "r+b") as f:
        f.seek(8 + n + info["data_offsets"][0] + idx * size)
        f.write(raw)


def rewrite_st_header(path: Path, header: dict) -> None:
    """Replace the JSON header, keeping the data (padded to the old header length)."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.dumps(header, separators=(",", ":")).encode()
    if len(h) > n:
        raise ValueError("new header is longer than the old one")
    path.write_bytes(struct.pack("<Q", n) + h.ljust(n, b" ") + raw[8 + n:])


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_json(path: Path, **changes) -> None:
    d = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    path.write_text(json.dumps(d, indent=2))


# --- the disk before and after ----------------------------------------------------------------

def snapshot(folder: Path) -> dict:
    """name -> (kind, bytes or link target, mode) for every entry of `folder` (not recursive)."""
    out = {}
    for e in sorted(os.listdir(folder)):
        p = folder / e
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            out[e] = ("link", os.readlink(p), None)
        elif stat.S_ISREG(st.st_mode):
            out[e] = ("file", p.read_bytes(), stat.S_IMODE(st.st_mode))
        else:
            out[e] = (stat.S_IFMT(st.st_mode), None, stat.S_IMODE(st.st_mode))
    return out


def temp_files(folder: Path) -> list[str]:
    return [e for e in os.listdir(folder) if TEMP_TAG in e]
