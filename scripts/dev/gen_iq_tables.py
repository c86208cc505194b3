#!/usr/bin/env python3
"""Generate quantize/iq_tables.cpp: the IQ lattice codebooks as C++ constant data.

Provenance. The grids are facts of the GGUF IQ formats; ggml keeps them in ggml-common.h
(iq2xxs_grid, iq2xs_grid, iq2s_grid, iq3xxs_grid, iq3s_grid, iq1s_grid). Rather than
retyping ~5,000 hex constants by hand, this script reads them out of ggml's own compiled
decoder: it builds one IQ block per batch of grid indices (unit scales, no signs), calls
ggml's dequantize_row_* from the libggml-base shared library that llama-cpp-python ships
(site-packages/llama_cpp/lib), and recovers every grid point from the decoded floats.
The result is written in ggml's in-memory form (one byte per coordinate, little-endian
uint64 / uint32 words), so our decoders index it exactly as ggml's do.

An independent check lives in tests/cpp/test_iq_tables.cpp, which compares every entry
with testdata/iq_tables_ref.txt, written by scripts/dev/extract_iq_tables.py from the
*gguf Python package's* copy of the tables (a separate transcription of the same data).

Usage: .venv/bin/python scripts/dev/gen_iq_tables.py [--lib PATH] [--out quantize/iq_tables.cpp]
"""
import argparse
import ctypes
import pathlib
import struct
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def find_lib() -> pathlib.Path:
    for p in (ROOT / ".venv").glob("lib/python3*/site-packages/llama_cpp/lib/libggml-base.so"):
        return p
    sys.exit("libggml-base.so not found; install llama-cpp-python into .venv (scripts/setup.sh)")


class Ggml:
    def __init__(self, path):
        self.lib = ctypes.CDLL(str(path))

    def dequant(self, fn: str, blocks: bytes, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        f = getattr(self.lib, fn)
        f.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int64]
        f.restype = None
        f(blocks, out.ctypes.data, n)
        return out


def f16(x: float) -> bytes:
    return np.float16(x).tobytes()


def iq2xxs(g: Ggml):
    # block: d, then per 32 weights two uint32: 4 grid bytes, then signs(4x7 bits)|scale<<28.
    # d = 8 and scale nibble 0 give db = 8 * 0.5 * 0.25 = 1.
    grid = []
    for base in range(0, 256, 32):
        blk = f16(8.0)
        for ib in range(8):
            idx = [base + 4 * ib + l for l in range(4)]
            blk += bytes(idx) + struct.pack("<I", 0)
        y = g.dequant("dequantize_row_iq2_xxs", blk, 256)
        grid += [y[8 * i: 8 * i + 8] for i in range(32)]
    return grid


def iq2xs(g: Ggml):
    grid = []
    for base in range(0, 512, 32):
        qs = struct.pack("<32H", *range(base, base + 32))  # 9-bit index, sign index 0
        blk = f16(8.0) + qs + bytes(8)                     # scales 0 -> db = 1
        y = g.dequant("dequantize_row_iq2_xs", blk, 256)
        grid += [y[8 * i: 8 * i + 8] for i in range(32)]
    return grid


def iq2s(g: Ggml):
    grid = []
    for base in range(0, 1024, 32):
        idx = list(range(base, base + 32))
        qs = bytes(i & 255 for i in idx)
        signs = bytes(32)
        qh = bytes(sum(((idx[4 * ib + l] >> 8) & 3) << (2 * l) for l in range(4)) for ib in range(8))
        blk = f16(8.0) + qs + signs + qh + bytes(8)
        y = g.dequant("dequantize_row_iq2_s", blk, 256)
        grid += [y[8 * i: 8 * i + 8] for i in range(32)]
    return grid


def iq3xxs(g: Ggml):
    # d = 4, scale 0 -> db = 4 * 0.5 * 0.5 = 1; 64 grid bytes (4 values each) per block.
    grid = []
    for base in range(0, 256, 64):
        blk = f16(4.0) + bytes(range(base, base + 64)) + bytes(32)
        y = g.dequant("dequantize_row_iq3_xxs", blk, 256)
        grid += [y[4 * i: 4 * i + 4] for i in range(64)]
    return grid


def iq3s(g: Ggml):
    # d = 1, scale nibble 0 -> db = 1; index = qs | high bit from qh (bit k of qh[ib/..]).
    grid = []
    for base in range(0, 512, 64):
        idx = list(range(base, base + 64))
        qs = bytes(i & 255 for i in idx)
        qh = bytes(sum(((idx[8 * b + k] >> 8) & 1) << k for k in range(8)) for b in range(8))
        blk = f16(1.0) + qs + qh + bytes(32) + bytes(4)
        y = g.dequant("dequantize_row_iq3_s", blk, 256)
        grid += [y[4 * i: 4 * i + 4] for i in range(64)]
    return grid


def iq1s(g: Ggml):
    # d = 1, scale 0 -> dl = 1, delta +0.125: y = grid + 0.125 exactly.
    grid = []
    for base in range(0, 2048, 32):
        idx = list(range(base, base + 32))
        qs = bytes(i & 255 for i in idx)
        qh = struct.pack("<8H", *[sum(((idx[4 * ib + l] >> 8) & 7) << (3 * l) for l in range(4)) for ib in range(8)])
        blk = f16(1.0) + qs + qh
        y = g.dequant("dequantize_row_iq1_s", blk, 256)
        grid += [y[8 * i: 8 * i + 8] - np.float32(0.125) for i in range(32)]
    return grid


def pack(points, width, signed=False):
    words = []
    for p in points:
        v = 0
        for j, c in enumerate(p):
            c = int(round(float(c)))
            assert float(c) == float(p[j]), p
            v |= (c & 0xFF) << (8 * j)
        words.append(v)
    return words


def emit(name, ctype, words, hexw, per_line):
    lines = [f"const {ctype} {name}[{len(words)}] = {{"]
    for i in range(0, len(words), per_line):
        lines.append("    " + ", ".join(f"0x{w:0{hexw}x}" for w in words[i:i + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


HEADER = '''\
// GENERATED by scripts/dev/gen_iq_tables.py -- do not edit by hand.
//
// The lattice codebooks of the GGUF IQ formats, in ggml's in-memory form: one byte per
// coordinate, packed little-endian into uint64 (8 coordinates) or uint32 (4 coordinates)
// words, entry i of a table being the grid point a block's index i selects.
//   IQ2 grids: bytes 0x08, 0x19, 0x2b (8, 25, 43); the decoder multiplies by d*(0.5+s)/4.
//   IQ3 grids: IQ3_XXS bytes 4..62 (8 levels), IQ3_S bytes 1,3,...,15 (8 odd levels).
//   IQ1 grid:  int8 bytes -1, 0, +1 (0xff, 0x00, 0x01), shifted by +-1/8 when decoded.
// Provenance: read out of ggml's compiled decoder ({version})
// by decoding unit-scale blocks; ggml keeps the same data in ggml-common.h. Checked entry
// by entry against the gguf Python package's own copy (testdata/iq_tables_ref.txt) by
// tests/cpp/test_iq_tables.cpp.
#include "quantize/iq_tables.h"

namespace smolq::iq {
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=None)
    ap.add_argument("--out", default=str(ROOT / "quantize" / "iq_tables.cpp"))
    a = ap.parse_args()
    lib = pathlib.Path(a.lib) if a.lib else find_lib()
    sonames = sorted(q.name for q in lib.parent.glob("libggml-base.so.*.*"))
    version = sonames[-1] if sonames else lib.name
    try:
        from importlib.metadata import version as dist_version
        version = f"llama-cpp-python {dist_version('llama_cpp_python')}, {version}"
    except Exception:
        pass
    g = Ggml(lib)
    parts = [HEADER.replace("{version}", version)]
    for name, fn, ctype, hexw, per in (
        ("kIq2xxsGrid", iq2xxs, "uint64_t", 16, 5),
        ("kIq2xsGrid", iq2xs, "uint64_t", 16, 5),
        ("kIq2sGrid", iq2s, "uint64_t", 16, 5),
        ("kIq3xxsGrid", iq3xxs, "uint32_t", 8, 9),
        ("kIq3sGrid", iq3s, "uint32_t", 8, 9),
        ("kIq1sGrid", iq1s, "uint64_t", 16, 5),
    ):
        pts = fn(g)
        parts.append(emit(name, ctype, pack(pts, hexw // 2), hexw, per) + "\n")
    parts.append("}  // namespace smolq::iq\n")
    pathlib.Path(a.out).write_text("\n".join(parts))
    print("wrote", a.out)


if __name__ == "__main__":
    main()
