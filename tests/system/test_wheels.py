"""The four distributions as pip builds them: every module in exactly one wheel, each
role's dependencies its own, and the artist's and the render node's installations
working without the gateway (in a throwaway virtual environment, not this one).

The wheels are built from clean copies of the source folders, so a stale `build/` left
by an earlier build cannot put a deleted module back into a wheel unnoticed.
"""
from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from farmtools import REPO

# source folder -> distribution built from it
ROOTS = {"common": "framefarm-common", "client": "framefarm", "worker": "framefarm-worker",
         "backend": "framefarm-gateway"}
SHIPPED = (".py", ".lua", ".yaml", ".html", ".css", ".js")  # code, scripts, the spec, the dashboard's pages
SERVER_ONLY = {"flask", "gunicorn", "redis", "werkzeug"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """distribution name -> its wheel."""
    tmp = tmp_path_factory.mktemp("wheels")
    ignore = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.pyc")
    for root in ROOTS:
        shutil.copytree(REPO / root, tmp / "src" / root, ignore=ignore)
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(out), *(str(tmp / "src" / root) for root in ROOTS)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = {}
    for wheel in out.glob("*.whl"):
        found[_metadata(wheel)["Name"]] = wheel
    assert sorted(found) == sorted(ROOTS.values())
    return found


def _metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {n for n in zf.namelist() if not n.split("/")[0].endswith(".dist-info")}


def test_every_module_and_data_file_is_in_exactly_one_wheel_and_nothing_else_is(wheels):
    contents = {dist: _names(wheel) for dist, wheel in wheels.items()}
    for root, dist in ROOTS.items():
        base = REPO / root
        sources = {p.relative_to(base).as_posix() for p in (base / "framefarm").rglob("*")
                   if p.suffix in SHIPPED and "__pycache__" not in p.parts}
        assert sources, root
        assert sources - contents[dist] == set(), f"left out of the {dist} wheel"
        elsewhere = {other: sources & names for other, names in contents.items() if other != dist}
        assert not any(elsewhere.values()), f"{root}/ files also in {elsewhere}"
        # Nothing in the wheel that is not in the source folder (a stale build, a stray copy).
        assert contents[dist] - sources == set(), f"the {dist} wheel holds files {root}/ does not"
    # framefarm is a namespace shared by the four: no wheel may own its __init__.py.
    assert not any("framefarm/__init__.py" in names for names in contents.values())


def _requires(wheel: Path, extras: tuple[str, ...] = ()) -> list[Requirement]:
    reqs = [Requirement(r) for r in _metadata(wheel).get_all("Requires-Dist") or []]
    return [r for r in reqs if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in ("", *extras))]


def _closure(wheels: dict[str, Path], dist: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Every distribution that installing `dist` pulls in: ours from the wheels just built,
    the rest from the metadata of what this environment installed."""
    seen: set[str] = set()
    todo = [Requirement(dist + (f"[{','.join(extras)}]" if extras else ""))]
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        if req.name in wheels:
            todo += _requires(wheels[req.name], tuple(req.extras))
        else:
            for raw in metadata.requires(req.name) or []:
                sub = Requirement(raw)
                if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                    todo.append(sub)
    return seen


def test_each_role_pulls_in_only_what_it_needs(wheels):
    assert _closure(wheels, "framefarm-worker") & SERVER_ONLY == set()
    assert _closure(wheels, "framefarm") & SERVER_ONLY == set()
    assert _closure(wheels, "framefarm-common") == {"framefarm-common", "zstandard"}
    # The worker no longer needs Blender Asset Tracer to hash a file, but the `framefarm`
    # command it runs under is the artist's distribution, which packs scenes with it.
    worker_direct = {r.name for r in _requires(wheels["framefarm-worker"])}
    assert worker_direct == {"framefarm-common", "framefarm", "pillow"}
    gateway = _closure(wheels, "framefarm-gateway", ("gcs",))
    assert {"flask", "gunicorn", "redis", "google-cloud-storage"} <= gateway
    assert "google-cloud-storage" not in _closure(wheels, "framefarm-gateway")


def _link_installed(dists: set[str], into: Path) -> None:
    """Make the installed files of `dists` (not ours) importable from `into`, by links:
    this machine has them already, and fetching them again would need the network."""
    into.mkdir()
    for name in dists:
        dist = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (into / top).exists():
                (into / top).symlink_to(source)


class Venv:
    """A throwaway virtual environment holding some of the four wheels and their own
    dependencies, and nothing else: what one kind of machine would install."""

    def __init__(self, path: Path, wheels: dict[str, Path]) -> None:
        self.path, self.wheels, self.added = path, wheels, 0
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
        self.python = path / "bin" / "python"
        self.site = Path(subprocess.run([self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        capture_output=True, text=True, check=True).stdout.strip())
        assert self.site != Path(sysconfig.get_path("purelib"))
        self.linked: set[str] = set()

    def install(self, dist: str) -> None:
        """`dist` and the wheels it depends on, from the wheels; other dependencies linked."""
        closure = _closure(self.wheels, dist)
        ours = sorted(closure & set(self.wheels))
        outside = closure - set(self.wheels) - self.linked
        self.added += 1
        deps = self.path / f"deps{self.added}"
        _link_installed(outside, deps)
        (self.site / f"deps{self.added}.pth").write_text(f"{deps}\n")
        self.linked |= outside
        proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(self.python), "install", "-q",
                               "--no-deps", "--no-index", *(str(self.wheels[d]) for d in ours)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def importable(self, *modules: str) -> list[str]:
        probe = subprocess.run([self.python, "-c", "import importlib.util as u, sys; "
                                "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))", *modules],
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
        return probe.stdout.split()

    def framefarm(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.path / "bin" / "framefarm", *args], capture_output=True, text=True,
                              timeout=60, cwd=self.path, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200",
                                                              "FRAMEFARM_HOME": str(self.path / "home")})


def assert_needs(res: subprocess.CompletedProcess, dist: str) -> None:
    """Exit 2 and one line naming the package to install: no traceback, no usage dump."""
    assert res.returncode == 2, (res.args, res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and f"pip install {dist}" in lines[0], lines


def test_an_artist_and_a_render_node_install_without_the_gateway(wheels, tmp_path):
    # The artist: framefarm and framefarm-common, with their own dependencies only.
    venv = Venv(tmp_path / "venv", wheels)
    venv.install("framefarm")
    assert venv.importable("flask", "redis", "gunicorn", "framefarm.worker", "framefarm.gateway") == []
    res = venv.framefarm("--help")
    assert res.returncode == 0, res.stderr
    assert "submit" in res.stdout and "[needs framefarm-worker]" in res.stdout
    res = venv.framefarm("submit", "nowhere.blend", "--frames", "1-3")
    assert res.returncode == 2 and "no such file" in res.stderr
    assert_needs(venv.framefarm("worker", "--gateway", "http://127.0.0.1:9", "--slots", "2"), "framefarm-worker")
    for argv in (["gateway"], ["up", "--workers", "0"], ["token", "create", "--role", "worker"],
                 ["blender", "publish", "x.tar.xz", "--version", "4.2"]):
        assert_needs(venv.framefarm(*argv), "framefarm-gateway")

    # A render node adds framefarm-worker (and Pillow): `framefarm worker` is there, the gateway is not.
    venv.install("framefarm-worker")
    assert venv.importable("flask", "redis", "gunicorn", "framefarm.gateway") == []
    res = venv.framefarm("worker", "--help")
    assert res.returncode == 0 and "--slots" in res.stdout, res.stderr
    for bad, says in (("0", "0 slots: give 1 to 64, or 'auto'"), ("65", "65 slots"),
                      ("two", "'two' is not a number of slots or 'auto'")):
        res = venv.framefarm("worker", "--slots", bad, "--token", "x", "--gateway", "http://127.0.0.1:9")
        assert res.returncode == 2 and says in res.stderr, (bad, res.stderr)
    assert_needs(venv.framefarm("token", "create", "--role", "client"), "framefarm-gateway")


def test_a_gateway_host_without_the_worker_runs_no_local_workers(wheels, tmp_path):
    venv = Venv(tmp_path / "venv", wheels)
    venv.install("framefarm-gateway")
    assert venv.importable("flask", "redis", "framefarm.worker") == ["flask", "redis"]
    # The gateway's gunicorn worker class (gevent) loads with the gateway's dependencies alone.
    load = subprocess.run([venv.python, "-c", "import gunicorn.workers.ggevent"], capture_output=True, text=True,
                          timeout=60, cwd=venv.path)
    assert load.returncode == 0, load.stderr[-2000:]
    res = venv.framefarm("token", "--help")
    assert res.returncode == 0 and "create" in res.stdout, res.stderr
    assert_needs(venv.framefarm("worker"), "framefarm-worker")
    # `up` would start workers it cannot run: it says so before starting anything.
    res = venv.framefarm("up", "--workers", "1", "--port", "9")
    assert res.returncode == 2 and "pip install framefarm-worker" in res.stderr and "--workers 0" in res.stderr
    assert not (venv.path / "home").exists()
