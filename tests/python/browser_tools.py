"""Headless Chromium for the report tests (verify's report.html, release's model card): render a
local page to a screenshot and to its DOM, with the console errors and failed loads Chromium
logs. Debian's `chromium` package (scripts/setup.sh); tests skip when it is missing."""
from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Rendered:
    console: list[str]  # console messages and failed resource loads (should be empty)
    dom: str            # the DOM after load (--dump-dom)
    width: int          # screenshot size and its number of distinct row bytes
    height: int
    distinct: int


def chromium_or_skip() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (scripts/setup.sh installs Debian's)")
    return chromium


def png_size_and_colours(path: Path):
    """Width, height and the number of distinct row bytes of a PNG (enough to tell a blank page)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    return width, height, len(set(raw[: 1 << 20]))


def render(html: Path, tmp_path: Path, window=(1280, 2000)) -> Rendered:
    chromium = chromium_or_skip()
    base = [chromium, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr", "--v=0", f"--window-size={window[0]},{window[1]}"]
    shot = tmp_path / (html.stem + ".png")
    proc = subprocess.run(base + [f"--screenshot={shot}", html.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Failed to load resource" in line]
    width, height, distinct = png_size_and_colours(shot)
    dom = subprocess.run(base + ["--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-3000:]
    return Rendered(console, dom.stdout, width, height, distinct)
