"""`framefarm submit --wait` on a terminal: the real command, on a pseudo-terminal,
against a real farm, draws a bar of frames done of the total with the rate and time
left, redrawn in place (unit/test_cli_meters.py checks the meters line by line)."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

from farmtools import check_frames


def run_on_a_terminal(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """(exit code, stdout, what the terminal showed) for `framefarm ARGS` with stderr on a pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "framefarm.cli", *args], stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, **env, "TERM": "xterm-256color", "COLUMNS": "120"})
    os.close(slave)
    shown: list[bytes] = []

    def drain() -> None:  # a full pty would block the command
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
        os.close(master)
    return proc.returncode, stdout, b"".join(shown).decode(errors="replace")


def test_submit_wait_draws_a_frames_bar_on_a_terminal(cluster, scenes, tmp_path):
    scene = scenes("--animated", "--size", "48")
    cluster.add_gateway()
    cluster.add_worker()
    out = tmp_path / "frames"
    code, stdout, screen = run_on_a_terminal(
        ["submit", str(scene), "--frames", "1-6", "--chunk", "2", "--wait", "--output", str(out)],
        cluster.client_env(), timeout=240)
    assert code == 0, screen[-3000:] + cluster.logs()
    check_frames(out, list(range(1, 7)), (48, 48))
    assert "6 frames in" in stdout
    assert "\x1b[" in screen and "━" in screen, screen[-2000:]  # a bar, redrawn in place
    assert "6/6" in screen and "frames/min" in screen, screen[-2000:]
    assert "frames  done" not in screen  # the plain lines are for pipes only
