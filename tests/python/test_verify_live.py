"""`smolq verify`'s summary table as a person sees it (cli/cmd_verify.cpp, class Display).

On a terminal the table is redrawn in place as chunks finish: rows still being evaluated end in
"(chunk i/n)", finished rows show their final values. The sweep runs here under a pseudo-terminal
(os.openpty, with a set window size) on the small 256-wide synthetic checkpoint; what it writes is
replayed through a minimal terminal model (cursor movement, line erasing, auto-wrap at the window
width), and the screen it leaves must hold one consistent table whose rows are report.md's rows,
in the report's order (largest file first), also when the rows are wider than the window and wrap.
Without a terminal the table is plain text: one line per row, printed once, no escape sequences.
"""
from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

CTX, CHUNKS = 64, 3
ESC = "\x1b"


# --- a minimal terminal -------------------------------------------------------------------

class Terminal:
    """Just enough of a VT100 for smolq's output: printable text with auto-wrap (xterm's deferred
    wrap: a line exactly as wide as the window does not wrap until the next character), CR, LF,
    backspace, tab, and the CSI sequences A/B/C/D (cursor moves), K (erase in line), J (erase in
    display) and m (colours, ignored). Anything else is an error, so unexpected output fails the
    test instead of being silently misread. Rows scrolled off the top are kept (scrollback)."""

    def __init__(self, cols: int, rows: int):
        self.cols, self.rows = cols, rows
        self.buf: list[list[str]] = [[]]  # every physical row, scrollback included
        self.wrapped: list[bool] = [False]  # row i continues row i - 1 (auto-wrap)
        self.top = 0  # first row of buf on the screen
        self.y = 0  # cursor row (index into buf)
        self.x = 0  # cursor column; == cols: wrap pending

    def _row(self, y: int) -> list[str]:
        while len(self.buf) <= y:
            self.buf.append([])
            self.wrapped.append(False)
        return self.buf[y]

    def _down(self, wrap: bool = False):
        self.y += 1
        self._row(self.y)
        if wrap:
            self.wrapped[self.y] = True
        if self.y >= self.top + self.rows:
            self.top = self.y - self.rows + 1

    def _put(self, ch: str):
        if self.x >= self.cols:  # deferred wrap
            self.x = 0
            self._down(wrap=True)
        row = self._row(self.y)
        if len(row) < self.x:
            row.extend(" " * (self.x - len(row)))
        if len(row) == self.x:
            row.append(ch)
        else:
            row[self.x] = ch
        self.x += 1

    def _csi(self, params: str, final: str):
        nums = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = max(1, nums[0]) if nums else 1
        if params.startswith("?"):
            if final in "hl":
                return  # cursor visibility and similar modes
            raise AssertionError(f"unexpected escape sequence ESC[{params}{final}")
        self.x = min(self.x, self.cols - 1)  # a cursor move or erase cancels a pending wrap
        if final == "A":
            self.y = max(self.top, self.y - n)
        elif final == "B":
            self.y = min(self.top + self.rows - 1, self.y + n)
            self._row(self.y)
        elif final == "C":
            self.x = min(self.cols - 1, self.x + n)
        elif final == "D":
            self.x = max(0, self.x - n)
        elif final == "K":
            mode = nums[0] if nums else 0
            row = self._row(self.y)
            if mode == 0:
                del row[self.x:]
            elif mode == 2:
                row.clear()
            else:
                raise AssertionError(f"unexpected erase mode ESC[{params}K")
        elif final == "J":
            if (nums[0] if nums else 0) != 0:
                raise AssertionError(f"unexpected erase mode ESC[{params}J")
            del self._row(self.y)[self.x:]
            for y in range(self.y + 1, len(self.buf)):
                self.buf[y] = []
                self.wrapped[y] = False
        elif final == "m":
            pass
        else:
            raise AssertionError(f"unexpected escape sequence ESC[{params}{final}")

    def feed(self, text: str):
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == ESC:
                m = re.compile(r"\x1b\[([0-9;?]*)([@-~])").match(text, i)
                if not m:
                    raise AssertionError(f"unexpected escape at {text[i:i + 12]!r}")
                self._csi(m.group(1), m.group(2))
                i = m.end()
                continue
            if ch == "\r":
                self.x = 0
            elif ch == "\n":
                self.x = min(self.x, self.cols - 1)
                self._down()
            elif ch == "\b":
                self.x = max(0, min(self.x, self.cols - 1) - 1)
            elif ch == "\t":
                self.x = min(self.cols - 1, (self.x // 8 + 1) * 8)
            elif ch < " " or ch == "\x7f":
                raise AssertionError(f"unexpected control character {ch!r}")
            else:
                self._put(ch)
            i += 1

    @staticmethod
    def _trim(rows: list[str]) -> list[str]:
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def physical_rows(self) -> list[str]:
        """Every row, scrollback included, without trailing blanks and blank rows at the end."""
        return self._trim(["".join(r).rstrip() for r in self.buf])

    def lines(self) -> list[str]:
        """Logical lines: wrapped physical rows joined back together (blanks at the end dropped)."""
        out: list[str] = []
        for row, cont in zip(self.buf, self.wrapped):
            text = "".join(row)
            if cont and out:
                out[-1] += text
            else:
                out.append(text)
        return self._trim([line.rstrip() for line in out])


def test_terminal_model():
    """The terminal model itself: the redraw idioms it must get right."""
    t = Terminal(cols=10, rows=5)
    t.feed("hello\r\n" + "abcdefghijKL\r\n")  # the second line wraps after 10 columns
    assert t.physical_rows() == ["hello", "abcdefghij", "KL"]
    assert t.lines() == ["hello", "abcdefghijKL"]
    t.feed("\x1b[3A\r\x1b[Jxy\r\n")  # up to "hello", erase to the end of the screen
    assert t.lines() == ["xy"]
    t.feed("0123456789\r\n")  # exactly the width: no wrap
    assert t.physical_rows() == ["xy", "0123456789"]
    t.feed("abc\r\x1b[K12\r\n")
    assert t.lines() == ["xy", "0123456789", "12"]
    t.feed("\x1b[2A\rnew")  # overwrite in place: the rest of the row stays
    assert t.lines() == ["xy", "new3456789", "12"]
    with pytest.raises(AssertionError):
        t.feed("\x1b[5n")


# --- running smolq under a pseudo-terminal -------------------------------------------------

def run_on_pty(cmd: list[str], cols: int, rows: int = 60, timeout: float = 300) -> tuple[int, str]:
    """Run `cmd` with stdin, stdout and stderr on a new pseudo-terminal of cols x rows; returns the
    exit code and everything written to the terminal (as the terminal receives it: the line
    discipline turns each "\\n" into "\\r\\n")."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    try:
        proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                                start_new_session=True)
    finally:
        os.close(slave)
    data = bytearray()
    deadline = time.time() + timeout
    try:
        while True:
            if time.time() > deadline:
                proc.kill()
                raise AssertionError(f"timed out; output so far:\n{data.decode(errors='replace')[-3000:]}")
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child exited and closed the terminal
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(master)
        rc = proc.wait(timeout=60)
    return rc, data.decode("utf-8")


def verify_cmd(smolq_bin, model: Path, d: Path, types: list[str]) -> list[str]:
    return [str(smolq_bin), "verify", str(model), "-f", str(d / "wiki.txt"), "--types", ",".join(types),
            "--ctx", str(CTX), "--chunks", str(CHUNKS), "--n-predict", "2", "--out", str(d / "out"), "-t", "1"]


@pytest.fixture
def work(tmp_path, synthetic, wikitext):
    (tmp_path / "wiki.txt").write_text(wikitext(6000), encoding="utf-8")
    return {"dir": tmp_path, "model": synthetic("aligned256-small-bf16")}


def squash(s: str) -> str:
    return " ".join(s.split())


def report_rows(out: Path) -> list[str]:
    """report.md's summary rows, cells joined by single spaces, without the ★/◆ marks and bold."""
    md = (out / "report.md").read_text(encoding="utf-8")
    table = md.split("## Summary", 1)[1].split("\n\n")[2]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        cells[0] = cells[0].replace("**", "").replace("★", "").replace("◆", "").strip()
        rows.append(squash(" ".join(cells)))
    return rows


def final_table(lines: list[str]) -> tuple[str, list[str]]:
    """The last table on the screen: its header line and the rows under it."""
    heads = [i for i, line in enumerate(lines) if line.startswith("type ") and "KLD mean" in line]
    assert heads, "no table on the screen:\n" + "\n".join(lines)
    i = heads[-1]
    rows = []
    for line in lines[i + 1:]:
        if not line.strip():
            break
        rows.append(line)
    return lines[i], rows


def progress_marks(raw: str, labels: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Per label, the (i, n) of each "(chunk i/n)" its row showed, in the order drawn (a row is
    redrawn unchanged whenever another row changes: repeats in a row count once)."""
    marks: dict[str, list[tuple[int, int]]] = {label: [] for label in labels}
    for piece in re.split(r"\r|\n|\x1b\[[0-9;?]*[@-~]", raw):
        m = re.match(r"(\S+) .*\(chunk (\d+)/(\d+)\)$", piece)
        if m and m.group(1) in marks:
            mark = (int(m.group(2)), int(m.group(3)))
            if not marks[m.group(1)] or marks[m.group(1)][-1] != mark:
                marks[m.group(1)].append(mark)
    return marks


def check_screen(term: Terminal, out: Path, labels: list[str]):
    header, rows = final_table(term.lines())
    assert squash(header) == squash(report_header(out))
    assert [squash(r) for r in rows] == report_rows(out), "the final screen's table is not the report's"
    assert not any("(chunk" in r for r in rows)
    assert sorted(r.split()[0] for r in rows) == sorted(labels)
    # Nothing else on the screen still claims to be running... except earlier copies of the table
    # that log lines pushed up; those lie above the final one.
    last_header = max(i for i, line in enumerate(term.lines()) if line.startswith("type ") and "KLD mean" in line)
    assert not any("(chunk" in line for line in term.lines()[last_header:])


def report_header(out: Path) -> str:
    md = (out / "report.md").read_text(encoding="utf-8")
    line = md.split("## Summary", 1)[1].split("\n\n")[2].splitlines()[0]
    return " ".join(c.strip() for c in line.strip().strip("|").split("|"))


def test_live_table_redraws_in_place(smolq_bin, work):
    # Evaluated in this order; the report lists them largest file first (Q8_0, Q4_K_M, Q2_K).
    types = ["Q2_K", "Q8_0", "Q4_K_M"]
    rc, raw = run_on_pty(verify_cmd(smolq_bin, work["model"], work["dir"], types), cols=200)
    assert rc == 0, raw[-3000:]
    out = work["dir"] / "out"
    term = Terminal(cols=200, rows=60)
    term.feed(raw)

    # Every row showed its chunks one by one, then its final values.
    marks = progress_marks(raw, types)
    for label in types:
        assert marks[label] == [(i, CHUNKS) for i in range(1, CHUNKS + 1)], (label, marks[label])
    # The table was redrawn in place: far fewer header lines remain than were drawn.
    drawn = raw.count("KLD mean")
    assert drawn >= len(types) * CHUNKS
    assert sum(1 for line in term.lines() if line.startswith("type ") and "KLD mean" in line) <= 2
    check_screen(term, out, types)
    # The recommendation follows the table.
    assert any(line.startswith("Smallest quant within the KLD budget") or line.startswith("No quant is within")
               for line in term.lines())


def test_live_table_wider_than_the_terminal(smolq_bin, work):
    """Rows are ~150 columns; in a 90-column window each wraps over two rows, and the redraw
    must move up over the wrapped rows too. The second run reuses three cached quants (ready at
    once) and evaluates a fourth that sorts between them."""
    d, out = work["dir"], work["dir"] / "out"
    first = ["Q2_K", "Q8_0", "Q4_K_M"]
    rc, raw = run_on_pty(verify_cmd(smolq_bin, work["model"], d, first), cols=90)
    assert rc == 0, raw[-3000:]
    term = Terminal(cols=90, rows=60)
    term.feed(raw)
    check_screen(term, out, first)

    second = first + ["Q5_K_M"]
    rc, raw = run_on_pty(verify_cmd(smolq_bin, work["model"], d, second), cols=90)
    assert rc == 0, raw[-3000:]
    term = Terminal(cols=90, rows=60)
    term.feed(raw)
    assert progress_marks(raw, second)["Q5_K_M"] == [(i, CHUNKS) for i in range(1, CHUNKS + 1)]
    assert all(not v for k, v in progress_marks(raw, first).items()), "cached rows have nothing to evaluate"
    check_screen(term, out, second)


def test_plain_table_without_a_terminal(smolq_bin, run_smolq, work):
    types = ["Q2_K", "Q8_0", "Q4_K_M"]
    proc = run_smolq(*verify_cmd(smolq_bin, work["model"], work["dir"], types)[1:])
    out = work["dir"] / "out"
    assert ESC not in proc.stdout and "\r" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert squash(lines[0]) == squash(report_header(out))
    # One line per row, each printed once, when complete (in completion order), then the
    # recommendation after a blank line.
    rows = lines[1:1 + len(types)]
    assert sorted(squash(r) for r in rows) == sorted(report_rows(out))
    assert lines[1 + len(types)] == "" and lines[2 + len(types)].startswith(("Smallest quant", "No quant"))
    assert len(lines) == len(types) + 3
    assert "(chunk" not in proc.stdout
    # Progress bars are for terminals only: stderr holds the step log, nothing redrawn.
    assert ESC not in proc.stderr and "\r" not in proc.stderr
