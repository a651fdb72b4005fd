"""The deployment files in packaging/, exercised as far as this machine allows: every
`framefarm` command in them is a real command line, each image and install line brings
the distributions of its role and no others, the systemd units verify, the gunicorn
config is the one the tests run with, the compose file is a complete farm, and Redis
URLs with TLS or Sentinel connect as configured."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import redis
import yaml
from packaging.requirements import Requirement

from farmtools import REPO, require
from framefarm.cli.main import ENTRY_POINTS, build_parser
from framefarm.gateway.localfarm import GatewayProcess, Process, RedisServer, free_port
from framefarm.gateway.metrics_files import MULTIPROC_ENV
from framefarm.gateway.config import Settings
from framefarm.gateway.redisconn import RedisURLError, parse_sentinel_url, redact, redis_from_url

PACKAGING = REPO / "packaging"
UNITS = sorted((PACKAGING / "systemd").glob("*.service"))
COMPOSE = PACKAGING / "compose.yaml"


def parse_framefarm(argv: list[str], where: str):
    """Parse a `framefarm ...` argv with the real parser; fail with the parser's complaint."""
    assert Path(argv[0]).name == "framefarm", (where, argv)
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{where}: `{shlex.join(argv)}` is not a valid framefarm command line (see stderr)")


def commands_in_text(text: str, markdown: bool = False) -> list[list[str]]:
    """`framefarm ...` command lines written out in comments, or in a page's code blocks."""
    found = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if markdown and not fenced:
            continue
        line = line.strip().lstrip("#").strip()
        # A command starts a line, or follows `&&`, `;` or `exec CONTAINER`.
        m = re.search(r"(?:^|&&\s*|;\s*|\bexec\s+\S+\s+)((?:/\S+/)?framefarm\s+\S.*)$", line)
        if m and not line.startswith(("Description=", "Documentation=")):
            found.append(shlex.split(m.group(1).split(" #")[0]))
    return found


def unit_commands(unit: Path) -> list[list[str]]:
    out = []
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            # Specifiers are filled in by systemd: give them sample values.
            out.append(shlex.split(line.removeprefix("ExecStart=").replace("%H", "render01").replace("%i", "1")))
    return out


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# -- which distribution brings what ---------------------------------------------------------

ROOTS = ("common", "client", "worker", "backend")  # source folders, one distribution each
PROJECTS = {root: tomllib.loads((REPO / root / "pyproject.toml").read_text())["project"] for root in ROOTS}
ROOT_OF = {project["name"]: root for root, project in PROJECTS.items()}


def installed_roots(requirements: list[str]) -> set[str]:
    """The source folders whose distributions `pip install REQUIREMENTS` puts in place."""
    todo = [Requirement(r) for r in requirements]
    roots: set[str] = set()
    while todo:
        req = todo.pop()
        if req.name not in ROOT_OF:
            continue
        root = ROOT_OF[req.name]
        assert set(req.extras) <= set(PROJECTS[root].get("optional-dependencies", {})), f"no such extra: {req}"
        if root not in roots:
            roots.add(root)
            todo += [Requirement(d) for d in PROJECTS[root]["dependencies"]]
    return roots


def commands_of(root: str) -> set[str]:
    """The `framefarm` commands a source folder's distribution brings."""
    plugins = {name for project in PROJECTS.values()
               for name in project.get("entry-points", {}).get(ENTRY_POINTS, {})}
    if root == "client":  # the command itself and the artist's commands
        sub = next(a for a in build_parser()._actions if a.dest == "command")
        return set(sub.choices) - plugins
    return set(PROJECTS[root].get("entry-points", {}).get(ENTRY_POINTS, {}))


def pip_installs(text: str) -> list[list[str]]:
    """What each `pip install ...` line in a file installs, as pip's arguments."""
    found = []
    for line in text.splitlines():
        m = re.search(r"\bpip install ([^`&]+)", line.strip().lstrip("#"))  # to `&&` or a code span's end
        if m:
            found.append([a for a in shlex.split(m.group(1)) if not a.startswith("-")])
    return found


def as_requirement(arg: str) -> str:
    """`./backend[gcs]` (a folder of this repository) -> `framefarm-gateway[gcs]`."""
    m = re.fullmatch(r"\./(\w+)(\[.*\])?", arg)
    return PROJECTS[m.group(1)]["name"] + (m.group(2) or "") if m else arg


def test_each_image_copies_and_installs_only_the_distributions_of_its_role():
    for image, role, command in (("gateway", "framefarm-gateway", "gateway"),
                                 ("worker", "framefarm-worker", "worker")):
        dockerfile = PACKAGING / f"Dockerfile.{image}"
        text = dockerfile.read_text()
        needed = installed_roots([role])
        copied = set(re.findall(r"^COPY (\S+) \1$", text, re.M))
        assert copied == needed, (dockerfile.name, copied)
        assert not re.findall(r"^COPY (?!(\S+) \1$)", text, re.M), f"{dockerfile.name} copies something else"
        ignore = (PACKAGING / f"Dockerfile.{image}.dockerignore").read_text().splitlines()
        assert ignore[ignore.index("*") + 1:] and "*" in ignore
        assert {line[1:].rstrip("/") for line in ignore if line.startswith("!")} == needed
        (args,) = pip_installs(text)
        assert all(a.startswith("./") for a in args), args  # this checkout, never an index
        assert installed_roots([as_requirement(a) for a in args]) == needed
        assert {a.split("[")[0].removeprefix("./") for a in args} == needed  # each named: met by the folder
        cmd = yaml.safe_load(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
        assert cmd[1] == command and command in set().union(*(commands_of(r) for r in needed))
    assert "gcs" in Requirement(as_requirement(next(a for a in pip_installs(
        (PACKAGING / "Dockerfile.gateway").read_text())[0] if "backend" in a))).extras


def test_install_lines_in_units_and_docs_bring_the_commands_they_run_and_no_other_role():
    for unit in UNITS:
        installs = pip_installs(unit.read_text())
        assert len(installs) == 1, f"{unit.name}: say how to install it, in one pip line"
        requirements = [as_requirement(a) for a in installs[0]]
        roots = installed_roots(requirements)
        runs = {c[1] for c in unit_commands(unit)}
        assert runs <= set().union(*(commands_of(r) for r in roots)), (unit.name, requirements)
        for req in requirements:  # nothing installed that the unit does not run
            assert runs & commands_of(ROOT_OF[Requirement(req).name]), f"{unit.name} installs {req} for nothing"
    assert "backend" not in installed_roots([as_requirement(a) for a in pip_installs(
        (PACKAGING / "systemd" / "framefarm-worker@.service").read_text())[0]])
    doc = (REPO / "docs" / "cloud.md").read_text()
    named = [as_requirement(a) for args in pip_installs(doc) for a in args]
    assert named and all(Requirement(r).name in ROOT_OF for r in named), named
    assert installed_roots(named) >= {"backend", "worker"}  # the guide installs both roles


def test_every_framefarm_command_in_compose_units_and_images_is_real():
    checked = []
    for name, service in compose()["services"].items():
        command = service.get("command")
        if command and command[0] == "framefarm":
            checked.append(parse_framefarm(command, f"compose service {name}"))
    for unit in UNITS:
        commands = unit_commands(unit)
        assert commands, f"{unit.name} has no ExecStart"
        checked += [parse_framefarm(c, unit.name) for c in commands]
    for dockerfile in (PACKAGING / "Dockerfile.gateway", PACKAGING / "Dockerfile.worker"):
        cmd = re.search(r"^CMD (\[.*\])$", dockerfile.read_text(), re.M)
        assert cmd, f"{dockerfile.name} has no CMD"
        checked.append(parse_framefarm(yaml.safe_load(cmd.group(1)), dockerfile.name))
    for doc in (COMPOSE, *UNITS, REPO / "docs" / "cloud.md"):
        written = commands_in_text(doc.read_text(), markdown=doc.suffix == ".md")
        checked += [parse_framefarm(c, f"{doc.name} (text)") for c in written]
    kinds = sorted({args.command for args in checked})
    assert kinds == ["blender", "gateway", "submit", "token", "worker"], kinds
    assert len(checked) >= 12


def test_the_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (not required: the units are still parsed above)")
    # verify checks that ExecStart's program exists: point it at this installation's framefarm.
    exe = Path(sys.executable).parent / "framefarm"
    exe = exe if exe.exists() else Path(shutil.which("framefarm"))
    for unit in UNITS:
        text = unit.read_text().replace("/opt/framefarm/bin/framefarm", str(exe))
        (tmp_path / unit.name).write_text(text)
    for name in ("framefarm-gateway.service", "framefarm-worker@1.service"):
        proc = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / name)], capture_output=True,
                              text=True, timeout=60)
        # verify exits 0 on unknown keys and bad values too, so any complaint at all fails.
        assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr


def test_the_units_stop_gracefully_and_are_hardened():
    for unit in UNITS:
        text = unit.read_text()
        for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                       "CapabilityBoundingSet=\n", "KillSignal=SIGTERM", "SystemCallFilter=@system-service"):
            assert option in text, f"{unit.name} lacks {option.strip()}"
        # SIGTERM to the main process alone (it stops its own children), SIGKILL to all at the end.
        assert "KillMode=mixed" in text, f"{unit.name} lacks KillMode=mixed"
    gateway = (PACKAGING / "systemd" / "framefarm-gateway.service").read_text()
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", gateway, re.M).group(1))
    assert stop > gunicorn_settings("python:framefarm.gateway.gunicorn_conf")["graceful_timeout"]
    from framefarm.worker.agent import STOP_S  # the worker's own bound (docs/operations.md)

    worker = (PACKAGING / "systemd" / "framefarm-worker@.service").read_text()
    assert int(re.search(r"^TimeoutStopSec=(\d+)$", worker, re.M).group(1)) > STOP_S + 5


def gunicorn_settings(source: str) -> dict:
    """The settings gunicorn reads from a config module or file, read in this process. The
    config prepares a metrics folder for its gunicorn master on import (metrics_files.py) and
    names it in the environment: that is undone here, or every gateway a later test of this
    process starts would inherit the folder and delete it when it stops, under the next test
    that serves /metrics in-process (a 500)."""
    before = os.environ.get(MULTIPROC_ENV)
    try:
        return _gunicorn_settings(source)
    finally:
        made = os.environ.get(MULTIPROC_ENV)
        if made != before:
            if before is None:
                del os.environ[MULTIPROC_ENV]
            else:
                os.environ[MULTIPROC_ENV] = before
            shutil.rmtree(made or "", ignore_errors=True)


def _gunicorn_settings(source: str) -> dict:
    from gunicorn.app.base import Application
    from gunicorn.config import Config

    class Probe(Application):
        def init(self, parser, opts, args):
            return None

        def load_config(self):
            self.cfg = Config()
            self.load_config_from_module_name_or_filename(source)

        def load(self):
            return None

    return {name: s.value for name, s in Probe().cfg.settings.items()}


def test_the_packaged_gunicorn_config_is_the_one_the_tests_run_with(tmp_path):
    gw = GatewayProcess(free_port(), "redis://unused", f"file://{tmp_path}", tmp_path / "log")
    assert gw.argv[gw.argv.index("-c") + 1] == "python:framefarm.gateway.gunicorn_conf"
    packaged = gunicorn_settings(str(PACKAGING / "gunicorn.conf.py"))
    assert packaged == gunicorn_settings("python:framefarm.gateway.gunicorn_conf")
    # A long-poll is a greenlet, not a thread: thousands may wait on one process.
    assert packaged["worker_class"] == "gevent" and packaged["worker_connections"] >= 1000
    assert packaged["post_worker_init"].__module__ == "framefarm.gateway.gunicorn_conf"


def test_the_compose_farm_is_redis_with_aof_two_gateways_behind_a_proxy_and_two_workers():
    services = compose()["services"]
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
    gateways = sorted(n for n, s in services.items() if (s.get("command") or [""])[:2] == ["framefarm", "gateway"])
    workers = sorted(n for n, s in services.items() if (s.get("command") or [""])[:2] == ["framefarm", "worker"])
    assert gateways == ["gateway-1", "gateway-2"] and workers == ["worker-1", "worker-2"]
    for name in gateways:
        assert services[name]["environment"]["FRAMEFARM_REDIS_URL"].startswith("redis://redis:")
    for name in workers:
        assert services[name]["environment"]["FRAMEFARM_GATEWAYS"] == "http://proxy:8080"
    mount = services["proxy"]["volumes"][0].split(":")
    nginx = (COMPOSE.parent / mount[0]).read_text()
    upstreams = re.findall(r"^\s*server ([\w.-]+):(\d+)", nginx, re.M)
    assert sorted(host for host, _ in upstreams) == gateways
    assert re.search(r"^\s*listen 8080;", nginx, re.M) and services["proxy"]["ports"] == ["8400:8080"]
    for directive in ("proxy_request_buffering off;", "proxy_buffering off;", "client_max_body_size 0;"):
        assert directive in nginx
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", nginx).group(1))
    assert read_timeout > max(Settings().claim_wait_s, Settings().job_wait_max_s) + 30


# -- Redis URLs -----------------------------------------------------------------------------

def test_tls_and_sentinel_urls_are_understood_without_leaking_passwords():
    tls = redis_from_url("rediss://:secret@redis.example:6380/2")
    assert tls.connection_pool.connection_class is redis.SSLConnection
    hosts, service, db, auth, options = parse_sentinel_url(
        "redis+sentinel://:pw@s1:26379,s2,[::1]:26380/mymaster/3?sentinel_password=sp")
    assert hosts == [("s1", 26379), ("s2", 26379), ("::1", 26380)]
    assert (service, db, auth, options) == ("mymaster", 3, {"password": "pw"}, {"sentinel_password": "sp"})
    for bad in ("redis+sentinel://s1:26379", "redis+sentinel://:pw@s1:x/m", "redis+sentinel://s1/m/db",
                "redis+sentinel://s1/m?bogus=1"):
        with pytest.raises(RedisURLError) as e:
            parse_sentinel_url(bad)
        assert "pw" not in str(e.value)
    assert redact("redis://:secret@host:6379/0") == "redis://***@host:6379/0"


def test_a_sentinel_url_finds_the_master(tmp_path):
    """A real redis-server and a real Sentinel watching it."""
    require("redis-server")
    master = RedisServer(tmp_path / "master", tmp_path / "master.log", port=free_port()).start()
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor farm 127.0.0.1 {master.port} 1\n")
    sentinel = Process("sentinel", [shutil.which("redis-server"), str(conf), "--sentinel"], tmp_path / "s.log")
    try:
        sentinel.start()
        probe = redis.Redis(port=sentinel_port)

        def knows_master() -> bool:
            try:
                return probe.sentinel_get_master_addr_by_name("farm") is not None
            except redis.ConnectionError:
                return False

        sentinel.wait_until(knows_master, 30, "watching the master")
        client = redis_from_url(f"redis+sentinel://127.0.0.1:{sentinel_port}/farm/0", socket_timeout=5)
        client.set("ff:probe", "through sentinel")
        assert master.client().get("ff:probe") == b"through sentinel"
    finally:
        sentinel.stop()
        master.stop()
