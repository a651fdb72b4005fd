"""`framefarm worker`: the worker agent's command, added to `framefarm` by this
distribution's ``framefarm.commands`` entry point (see framefarm.cli.main)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from framefarm.cli.usage import ROLE_COMMANDS, UsageError, client_options
from framefarm.client import config
from framefarm.common import home
from framefarm.common.procs import on_stop_signals

if TYPE_CHECKING:
    from .render import BlenderInfo
    from .sandbox import Sandbox


def add_worker(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("worker", help=ROLE_COMMANDS["worker"][1])
    p.add_argument("--blender", default=None,
                   help="Blender executable (default: blender on PATH), or 'farm' for the build the farm publishes")
    p.add_argument("--device", default="auto", choices=["auto", "CPU", "CUDA", "OPTIX", "HIP", "ONEAPI", "METAL"],
                   help="Cycles device (auto picks the best this Blender reports)")
    p.add_argument("--slots", type=_slots, default=None, metavar="N|auto",
                   help="parts rendered at once, each by its own Blender on all the cores (default auto: 2 on "
                        "a CPU with 2 cores or more, 1 on a GPU); 1 for scenes that need most of the memory")
    p.add_argument("--workdir", default=None, help="cache and scratch folder (default $FRAMEFARM_HOME/worker)")
    p.add_argument("--name", default=None, help="worker name shown by the farm")
    p.add_argument("--sandbox", default="auto", choices=["auto", "required", "off"],
                   help="run Blender in a bubblewrap sandbox: auto (where bwrap works, else a loud warning), "
                        "required (refuse to start without it), off (scenes can read this machine's files)")
    p.add_argument("--max-blender-memory", type=_size, default=None, metavar="SIZE",
                   help="stop Blender and fail its part when it uses more memory than this, e.g. 8GiB "
                        "(default: no limit)")
    p.add_argument("--no-warm", dest="warm", action="store_false",
                   help="start Blender afresh for every part (the scene loads once per part) instead of "
                        "keeping each slot's Blender, with the job's scene loaded, between parts of a job")
    p.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                   help="claim the next part only when a part is done, instead of a few seconds before its "
                        "render is expected to end, with the next part's scene fetched while it renders")
    p.add_argument("--warm-parts", type=int, default=50, metavar="N",
                   help="replace a warm Blender after it rendered this many parts (default 50)")
    p.add_argument("--warm-max-memory", type=_size, default=None, metavar="SIZE",
                   help="replace a warm Blender whose memory exceeds this after a part (default: twice what "
                        "it held after its first part)")
    client_options(p)
    p.set_defaults(func=worker, default_log_level="INFO")


def _slots(text: str) -> int | None:
    """`auto` (None: the agent decides by device and cores, render.slot_policy) or a count
    from 1 to 64 (the farm takes at most 64 leases from one worker)."""
    if text.strip().lower() == "auto":
        return None
    try:
        slots = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of slots or 'auto'") from None
    if not 1 <= slots <= 64:
        raise argparse.ArgumentTypeError(f"{slots} slots: give 1 to 64, or 'auto'")
    return slots


def _size(text: str) -> int:
    from .limits import parse_size
    try:
        size = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if size < 1 << 20:
        raise argparse.ArgumentTypeError(f"{text} is less than 1 MiB; Blender alone needs far more")
    return size


def _probe(blender: str, sandbox: Sandbox, mode: str) -> tuple[BlenderInfo, Sandbox]:
    """Blender probed as it will run. A Blender that starts only outside the sandbox (bwrap
    works, but this system's Blender needs files the sandbox leaves out) is refused under
    `required` and, under `auto`, runs unsandboxed after a loud warning, like a missing bwrap."""
    from .render import RenderError, probe_blender
    from .sandbox import SandboxError, unsandboxed

    try:
        return probe_blender(blender, sandbox), sandbox
    except RenderError as e:
        if sandbox.bwrap is None:
            raise
        problem = f"Blender does not start in the sandbox: {e.message}"
        if mode == "required":
            raise SandboxError(f"--sandbox required, but {problem}\n{e.log_tail}") from None
    info = probe_blender(blender)  # fails as usual where Blender does not start at all
    return info, unsandboxed(problem)


def worker(args: argparse.Namespace) -> int:
    from .agent import Agent
    from .blender_fetch import BlenderFetchError, fetch_pinned
    from .render import RenderError
    from .sandbox import SandboxError, choose
    from .warm import WarmSettings
    from .workdir import WorkdirError, hold

    if args.warm_parts < 1:
        raise UsageError("--warm-parts must be 1 or more")
    api = config.from_args(args).api()
    workdir = Path(args.workdir) if args.workdir else home.home() / "worker"
    try:
        hold(workdir)  # until this process ends: two workers on one folder would mix their frames
    except WorkdirError as e:
        print(f"framefarm worker: {e}", file=sys.stderr)
        return 1
    try:
        blender = args.blender or "blender"
        if blender == "farm":  # the build the farm publishes, checked against its SHA-256
            blender = str(fetch_pinned(api, workdir / "blender"))
        info, sandbox = _probe(blender, choose(args.sandbox), args.sandbox)
        agent = Agent(api, info, workdir=workdir, device=args.device, slots=args.slots, name=args.name,
                      sandbox=sandbox, max_memory=args.max_blender_memory,
                      warm=WarmSettings(args.warm_parts, args.warm_max_memory) if args.warm else None,
                      prefetch=args.prefetch)
    except RenderError as e:
        print(f"framefarm worker: {e.message}", file=sys.stderr)
        return 1
    except SandboxError as e:
        print(f"framefarm worker: {e}", file=sys.stderr)
        return 1
    except BlenderFetchError as e:
        print(f"framefarm worker: {e}", file=sys.stderr)
        return 1
    on_stop_signals(agent.stop.set, agent.hurry)
    agent.run()
    return 0
