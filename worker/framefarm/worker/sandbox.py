"""Blender in a bubblewrap sandbox: what a client's scene can see and touch on a worker.

A .blend is untrusted input, and Blender reads whatever paths a scene names (images at
absolute paths, `//../..` climbing out of the scene folder, and from 4.5 text, CSV, OBJ,
PLY, STL and VDB files through geometry nodes). Python auto-run stays off
(`--disable-autoexec`), but that does not stop file reads. So on Linux each Blender runs
under `bwrap` and sees only:

- the system's programs and libraries (`/usr` and the `/lib`, `/bin` links, and `/etc` entries
  the loader and fonts need: never the whole `/etc`, which holds `shadow` and keys readable by
  a root worker),
- its own install (a Blender the worker downloaded, or the bpy launcher's Python),
- the scene folder, read-only, and its output folder, the only place it may write,
- a private `/tmp`, an empty `/dev`, its own `/proc`;

with no network (`--unshare-net`: only a loopback of its own), its own user, PID, IPC and
UTS namespaces, no capabilities (a root worker's Blender could otherwise remount its
read-only binds), a new session (no terminal to push keys into), killed with the worker
(`--die-with-parent`), and a clean environment: never the worker's token.

The environment is clean in every mode, sandbox or not (`clean_env`).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger("framefarm.worker")

MODES = ("auto", "required", "off")
PROBE_TIMEOUT_S = 30.0

# What Debian's Blender needs from /etc: the dynamic loader's cache and its alternatives
# (libblas and liblapack are chosen there), fonts and the time zone. Nothing else.
_ETC = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "fonts", "localtime", "OpenCL")
# Top-level system folders: bound read-only, or recreated as the links they are
# on merged-/usr systems (Debian 12's /lib -> usr/lib).
# Not /opt: other software's data and keys live there; a Blender installed under it gets its own
# folder bound (install_paths).
_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# GPU device nodes, passed in only when Blender renders on a GPU.
_GPU_DEVICES = ("/dev/dri", "/dev/kfd", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                "/dev/nvidia-modeset")


class SandboxError(RuntimeError):
    """The sandbox was required and cannot run here."""


def clean_env() -> dict[str, str]:
    """Blender's whole environment: nothing of the worker's (its token, cloud credentials,
    proxies), only what Blender needs to find its libraries and a writable home."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"):
        if name in os.environ:  # which GPUs this worker may use is the operator's choice
            env[name] = os.environ[name]
    return env


@dataclass(frozen=True)
class Sandbox:
    """How this worker runs Blender: `bwrap` is the sandbox's executable, or None for none."""

    bwrap: str | None = None

    @property
    def name(self) -> Literal["bwrap", "off"]:
        """What the worker advertises when it registers: 'bwrap' or 'off'."""
        return "bwrap" if self.bwrap else "off"

    def command(self, cmd: list[str], *, read_only: Iterable[Path] = (), writable: Iterable[Path] = (),
                gpu: bool = False) -> list[str]:
        """`cmd` as run in the sandbox (unchanged without one), seeing only the system, the
        program's own install, `read_only` and `writable` (each at its own path)."""
        if self.bwrap is None:
            return list(cmd)
        args = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--clearenv"]
        for name, value in clean_env().items():
            args += ["--setenv", name, value]
        for top in _SYSTEM:
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        for name in _ETC:
            if os.path.exists(f"/etc/{name}"):
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        if gpu:
            args += ["--ro-bind-try", "/sys", "/sys"]
            nodes = [str(p) for p in Path("/dev").glob("nvidia[0-9]*")] + list(_GPU_DEVICES)
            for node in nodes:
                args += ["--dev-bind-try", node, node]
        # Binds after the tmpfs, so that folders under /tmp (tests', tempfile's) show through it.
        for path in [*install_paths(cmd[0]), *read_only]:
            args += ["--ro-bind", str(path), str(path)]
        for path in writable:
            args += ["--bind", str(path), str(path)]
        return [*args, "--chdir", "/tmp", "--", *cmd]


NO_SANDBOX = Sandbox(None)


def install_paths(program: str) -> list[Path]:
    """What must be visible, read-only, for `program` to run: its own folder when it lies
    outside the system folders (a Blender the worker downloaded); for a script (the bpy
    launcher) the script and its interpreter's environment (the bpy wheel's venv)."""
    path = Path(shutil.which(program) or program).absolute()
    found: list[Path] = []
    real = path.resolve()
    if not _is_system(real):
        found.append(real.parent if _is_binary(real) else real)
    if not _is_system(path) and path != real:
        found.append(path)  # the link itself, at the path the command names
    interpreter = _shebang(real)
    if interpreter is not None:
        venv = interpreter.parent.parent
        if (venv / "pyvenv.cfg").is_file() and not _is_system(venv):
            found.append(venv)
        base = interpreter.resolve()
        if not _is_system(base):  # a Python built outside /usr (pyenv, conda): its prefix
            found.append(base.parent.parent)
    return list(dict.fromkeys(found))


def _is_system(path: Path) -> bool:
    return any(path == Path(top) or Path(top) in path.parents for top in _SYSTEM)


def _is_binary(path: Path) -> bool:
    return _shebang(path) is None


def _shebang(path: Path) -> Path | None:
    """The interpreter named by the script's `#!` line; None for a binary."""
    try:
        with path.open("rb") as f:
            first = f.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return Path(words[0]) if words else None


def choose(mode: str) -> Sandbox:
    """The sandbox for `--sandbox MODE`, probed once: `off` never sandboxes; `required` raises
    SandboxError where bwrap cannot run; `auto` sandboxes where it can, else warns loudly."""
    if mode not in MODES:
        raise SandboxError(f"--sandbox must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        log.warning("SANDBOX OFF: Blender runs with this worker's own rights; a scene can read any "
                    "file the worker can and reach the network. Only for scenes you trust.")
        return NO_SANDBOX
    problem = probe()
    if problem is None:
        return Sandbox(shutil.which("bwrap"))
    if mode == "required":
        raise SandboxError(f"--sandbox required, but {problem}")
    return unsandboxed(problem)


def unsandboxed(problem: str) -> Sandbox:
    """`--sandbox auto` where the sandbox cannot run: said loudly, then no sandbox."""
    log.warning("=" * 72)
    log.warning("NO SANDBOX: %s.", problem)
    log.warning("Blender will run UNSANDBOXED: a client's scene can read any file this worker can "
                "(its home, its cache) and reach the network. Install bubblewrap (Debian: apt-get "
                "install bubblewrap), or start with --sandbox required to refuse to run without it.")
    log.warning("=" * 72)
    return NO_SANDBOX


def probe() -> str | None:
    """Why bwrap cannot run a program here (None: it can), tried with the options Blender gets."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap (bubblewrap) is not installed"
    cmd = Sandbox(bwrap).command(["true"])
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be run: {exc}"
    if done.returncode != 0:
        return f"bwrap does not work here (user namespaces off?): {(done.stderr or done.stdout).strip()[-300:]}"
    return None
