"""testdata/iq_tables_ref.txt is what the installed gguf package says the IQ tables are.

The C++ test (tests/cpp/test_iq_tables.cpp) compares our tables with that committed file;
this test guards the file itself: re-extracting from the gguf package gives the same text.
"""
import importlib.util
import os
import pathlib

SOURCE = pathlib.Path(os.environ.get("SMOLQ_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))


def load_extractor():
    spec = importlib.util.spec_from_file_location("extract_iq_tables", SOURCE / "scripts/dev/extract_iq_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reference_file_matches_gguf_package():
    fresh = load_extractor().render().splitlines()
    committed = (SOURCE / "testdata/iq_tables_ref.txt").read_text().splitlines()
    # Header lines name the package version; the data lines must agree exactly.
    data = lambda lines: [l for l in lines if not l.startswith("#")]
    assert data(fresh) == data(committed)
    assert len(data(committed)) == 256 + 512 + 1024 + 256 + 512 + 2048 + 128 + 16 + 16
