#!/usr/bin/env python3
"""Write testdata/iq_tables_ref.txt from the gguf Python package's copy of the IQ tables.

gguf-py (gguf/quants.py) stores each IQ grid as a hex string of packed level indices
(2 or 3 bits per coordinate) plus a `grid_map` of the level values; it expands them in
`init_grid()`. This script expands them the package's own way and writes one line per grid
point: `<table> <index> <v0> <v1> ...` with the coordinate values as ggml stores them
(bytes 8/25/43 for IQ2, the IQ3 level bytes, -1/0/1 for IQ1). It also writes the IQ4_NL and
FP4 value tables and the IQ2 sign table that gguf-py carries.

The file is committed (with this provenance in its header) and compared entry by entry with
quantize/iq_tables.cpp by tests/cpp/test_iq_tables.cpp; tests/python/test_iq_tables.py
re-runs this script against the installed package and checks the committed file is current.

Usage: .venv/bin/python scripts/dev/extract_iq_tables.py [--out testdata/iq_tables_ref.txt]
"""
import argparse
import pathlib

import numpy as np
import gguf
from gguf import quants

ROOT = pathlib.Path(__file__).resolve().parents[2]

GRIDS = (
    ("iq2xxs_grid", quants.IQ2_XXS),
    ("iq2xs_grid", quants.IQ2_XS),
    ("iq2s_grid", quants.IQ2_S),
    ("iq3xxs_grid", quants.IQ3_XXS),
    ("iq3s_grid", quants.IQ3_S),
    ("iq1s_grid", quants.IQ1_S),
)


def render() -> str:
    try:
        from importlib.metadata import version
        ver = version("gguf")
    except Exception:  # pragma: no cover
        ver = "unknown"
    out = [
        "# Reference copy of the GGUF IQ tables, written by scripts/dev/extract_iq_tables.py",
        f"# from the gguf Python package (gguf-py {ver}, gguf/quants.py: grid_hex/grid_map, ksigns, kvalues).",
        "# Format: <table> <index> <values...>; grid values as ggml stores them (IQ2 bytes 8/25/43,",
        "# IQ3 level bytes, IQ1 -1/0/1). Compared entry by entry with quantize/iq_tables.cpp.",
    ]
    for name, cls in GRIDS:
        cls.init_grid()
        grid = np.asarray(cls.grid).reshape(cls.grid_shape)
        for i, row in enumerate(grid):
            out.append(f"{name} {i} " + " ".join(str(int(v)) for v in row))
    for i, b in enumerate(quants.IQ2_XXS.ksigns):
        out.append(f"ksigns_iq2xs {i} {b}")
    for i, v in enumerate(quants.IQ4_NL.kvalues):
        out.append(f"kvalues_iq4nl {i} {v}")
    for i, v in enumerate(quants.MXFP4.kvalues):
        out.append(f"kvalues_mxfp4 {i} {v}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "testdata" / "iq_tables_ref.txt"))
    a = ap.parse_args()
    pathlib.Path(a.out).write_text(render())
    print("wrote", a.out)


if __name__ == "__main__":
    main()
