"""Unit tests: no Redis, no Blender, no network; the whole set runs in seconds.

A test that needs a real Blender, redis-server or the storage emulator belongs in
tests/system. The guard below makes that mistake fail loudly instead of passing
slowly: for every unit test,
- the real executables are refused by `subprocess.Popen` (so also `run`), however
  they are named;
- stand-ins that refuse to run come first on PATH, so a child process that looks
  them up (`framefarm up`, a worker) is stopped as well and the test fails;
- sockets connect only to this machine (loopback and Unix sockets).
Stand-in programs a test writes itself (a fake `blender` script) are allowed.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest

FORBIDDEN = ("blender", "redis-server", "gcp-storage-emulator")
REAL = {os.path.realpath(path) for path in map(shutil.which, FORBIDDEN) if path}


@pytest.fixture(scope="session")
def _refusing_stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("unit-guard")
    for name in FORBIDDEN:
        script = folder / name
        script.write_text(f"#!/bin/sh\necho \"{name} $*\" >> '{folder}/started'\n"
                          f"echo 'unit tests may not run {name}: move the test to tests/system' >&2\nexit 127\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def _argv0(args: object) -> str | None:
    if isinstance(args, (str, bytes, os.PathLike)):
        return None  # a shell line: the stand-ins on PATH catch it
    first = list(args)[0] if args else None  # type: ignore[call-overload]
    return os.fsdecode(first) if first is not None else None


def _local(address: object) -> bool:
    if isinstance(address, (str, bytes)):
        return True  # a Unix socket
    host = address[0] if isinstance(address, tuple) else ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_system_parts(_refusing_stand_ins: Path, monkeypatch: pytest.MonkeyPatch):
    started = _refusing_stand_ins / "started"
    started.unlink(missing_ok=True)
    monkeypatch.setenv("PATH", f"{_refusing_stand_ins}{os.pathsep}{os.environ.get('PATH', '')}")

    real_init = subprocess.Popen.__init__

    def guarded_init(self, args, *rest, **kwargs):  # type: ignore[no-untyped-def]
        exe = kwargs.get("executable") or _argv0(args)
        if exe is not None and os.path.realpath(shutil.which(os.fsdecode(exe)) or exe) in REAL:
            pytest.fail(f"a unit test started {exe}: tests that need it belong in tests/system")
        real_init(self, args, *rest, **kwargs)

    real_connect = socket.socket.connect

    def guarded_connect(self, address):  # type: ignore[no-untyped-def]
        if not _local(address):
            pytest.fail(f"a unit test connected to {address!r}: unit tests use no network")
        return real_connect(self, address)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_init)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    yield
    if started.exists():
        pytest.fail(f"a unit test started {started.read_text().strip()!r}: tests that need it belong in tests/system")
