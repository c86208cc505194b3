"""Interrupting a run leaves nothing half-written (issue "Hardening", must-show item 3).

`smolq convert`, `smolq quantize` and `smolq imatrix` are started on the real SmolLM2-135M
checkpoint with an existing destination file, and SIGINT or SIGTERM is sent while they work:
for convert/quantize once their hidden temporary file (`.<name>.smolq-tmp-<pid>`, see
formats/output_path.h) exists, i.e. mid-write; for imatrix (which writes only at the end)
once it has started computing. Each must exit with 128 + signal (130 / 143), print one line
saying it was interrupted, leave the destination byte-for-byte as it was and leave no
temporary file behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

SENTINEL = b"an earlier output that must survive an interrupted run\n"
SIGNALS = [signal.SIGINT, signal.SIGTERM]


def temp_files(folder: Path, dest_name: str) -> list[Path]:
    return sorted(folder.glob(f".{dest_name}.smolq-tmp-*"))


def wait_until(cond, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_and_interrupt(cmd: list[str], dest: Path, sig: signal.Signals, started, log: Path,
                      settle: float = 0.3) -> tuple[int, str]:
    """Starts cmd, waits for started() (then `settle` seconds more), sends sig, waits for exit."""
    dest.write_bytes(SENTINEL)
    before = dest.stat()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_until(started, proc, 300, "the run got under way")
            time.sleep(settle)
            if proc.poll() is not None:
                pytest.fail(f"the command finished (exit {proc.returncode}) before the signal: make it slower")
            proc.send_signal(sig)
            # Generous: the run notices the signal at its next check (imatrix: between chunks of
            # its forward pass), which under ASan on a loaded machine took over 120 s once.
            rc = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = log.read_text(errors="replace")
    assert dest.read_bytes() == SENTINEL, "the destination was modified"
    assert dest.stat().st_mtime_ns == before.st_mtime_ns
    assert temp_files(dest.parent, dest.name) == [], "a temporary file was left behind"
    return rc, stderr


def check_message(stderr: str, command: str) -> None:
    lines = [l for l in stderr.splitlines() if l.strip()]
    mentions = [l for l in lines if "interrupted" in l]
    assert len(mentions) == 1, f"expected one 'interrupted' line, got:\n{stderr}"
    assert lines[-1] == mentions[0], f"the interruption message is not the last line:\n{stderr}"
    assert mentions[0].startswith(f"smolq {command}:"), mentions[0]


@pytest.fixture(scope="module")
def f16_gguf(run_smolq, real_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("interrupt") / "smollm2-135m-f16.gguf"
    run_smolq("convert", real_ckpt, "-o", out, "--outtype", "f16", "-q")
    return out


@pytest.fixture(scope="module")
def calib_text(wikitext, tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("calib") / "calib.txt"
    p.write_text(wikitext(60000))
    return p


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_convert_interrupted_mid_write(smolq_bin, real_ckpt, tmp_path, sig):
    dest = tmp_path / "model.gguf"
    # A quantized type on one thread keeps the write going for several seconds.
    cmd = [str(smolq_bin), "convert", str(real_ckpt), "-o", str(dest), "--type", "Q4_K_M", "-t", "1", "-q"]
    rc, stderr = run_and_interrupt(cmd, dest, sig, lambda: temp_files(tmp_path, dest.name) != [],
                                   tmp_path / "stderr.txt")
    assert rc == 128 + sig, f"exit code {rc}, expected {128 + sig}\n{stderr}"
    check_message(stderr, "convert")


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_quantize_interrupted_mid_write(smolq_bin, f16_gguf, tmp_path, sig):
    dest = tmp_path / "model-q4_k_m.gguf"
    cmd = [str(smolq_bin), "quantize", str(f16_gguf), str(dest), "Q4_K_M", "-t", "1"]
    rc, stderr = run_and_interrupt(cmd, dest, sig, lambda: temp_files(tmp_path, dest.name) != [],
                                   tmp_path / "stderr.txt")
    assert rc == 128 + sig, f"exit code {rc}, expected {128 + sig}\n{stderr}"
    check_message(stderr, "quantize")


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_imatrix_interrupted_while_computing(smolq_bin, f16_gguf, calib_text, tmp_path, sig):
    dest = tmp_path / "imatrix.gguf"
    log = tmp_path / "stderr.txt"
    cmd = [str(smolq_bin), "imatrix", str(f16_gguf), "-f", str(calib_text), "-o", str(dest), "-t", "1", "--no-ppl"]
    rc, stderr = run_and_interrupt(cmd, dest, sig, lambda: "imatrix: computing" in log.read_text(errors="replace"),
                                   log, settle=0.5)
    assert rc == 128 + sig, f"exit code {rc}, expected {128 + sig}\n{stderr}"
    check_message(stderr, "imatrix")


def test_quantize_optimize_interrupted_mid_pass(smolq_bin, f16_gguf, calib_text, tmp_path):
    """`--optimize` opens its output before the calibration pass and writes every rounded tensor
    into it at once (docs/optimize.md, Cost): interrupted once tensors are in the temporary file,
    the destination is untouched and the temporary file goes."""
    dest = tmp_path / "model-q4_k_m-opt.gguf"
    log = tmp_path / "stderr.txt"
    cmd = [str(smolq_bin), "quantize", str(f16_gguf), str(dest), "Q4_K_M", "-t", "1", "--optimize",
           "--calib", str(calib_text), "--opt-chunks", "2"]
    rc, stderr = run_and_interrupt(
        cmd, dest, signal.SIGINT,
        lambda: temp_files(tmp_path, dest.name) != [] and "optimize: blk.1 " in log.read_text(errors="replace"),
        log, settle=0.1)
    assert rc == 130, f"exit code {rc}, expected 130\n{stderr}"
    check_message(stderr, "quantize")


def test_second_signal_still_cleans_up(smolq_bin, f16_gguf, tmp_path):
    """A user who presses Ctrl-C twice gets the default action at once (killed by SIGINT),
    and the signal handler still removes the temporary file first."""
    dest = tmp_path / "model-q6_k.gguf"
    dest.write_bytes(SENTINEL)
    cmd = [str(smolq_bin), "quantize", str(f16_gguf), str(dest), "Q6_K", "-t", "1"]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_until(lambda: temp_files(tmp_path, dest.name) != [], proc, 300, "the temporary file appeared")
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # Either the first signal was already handled (clean exit 130) or the second killed it.
    assert rc in (130, -signal.SIGINT), rc
    assert dest.read_bytes() == SENTINEL
    assert temp_files(tmp_path, dest.name) == []


def test_sigkill_leftover_is_cleaned_by_the_next_run(smolq_bin, f16_gguf, tmp_path):
    """SIGKILL (the OOM killer's signal) cannot be caught: the temporary file stays, named
    `.<dest>.smolq-tmp-<pid>` so it can be found. The next run for the same destination removes
    it (its process is gone), says so, and writes the file."""
    dest = tmp_path / "model-q4_0.gguf"
    dest.write_bytes(SENTINEL)
    cmd = [str(smolq_bin), "quantize", str(f16_gguf), str(dest), "Q4_K_M", "-t", "1"]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        wait_until(lambda: temp_files(tmp_path, dest.name) != [], proc, 300, "the temporary file appeared")
        proc.kill()
        proc.wait()
    left = temp_files(tmp_path, dest.name)
    assert [p.name for p in left] == [f".{dest.name}.smolq-tmp-{proc.pid}"]
    assert dest.read_bytes() == SENTINEL
    rerun = subprocess.run([str(smolq_bin), "quantize", str(f16_gguf), str(dest), "Q8_0", "-t", "2", "-q"],
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"removed stale temporary file {left[0]}" in rerun.stderr
    assert temp_files(tmp_path, dest.name) == [] and dest.read_bytes()[:4] == b"GGUF"
