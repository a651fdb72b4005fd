"""`framefarm`: the one command line of the farm.

Exit codes: 0 success, 1 the farm said no (a failed or cancelled job, an
unreachable farm, a refused request), 2 bad usage.
"""
from __future__ import annotations

import argparse
import logging
import sys

from framefarm.common.http import FarmError
from framefarm.common import logs

from .usage import UsageError

log = logging.getLogger("framefarm.cli")


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gateway", action="append", dest="gateways", metavar="URL",
                   help="gateway URL (repeat for several; default: FRAMEFARM_GATEWAYS or the local farm)")
    p.add_argument("--token", help="access token (default: FRAMEFARM_TOKEN or the local farm's)")


def build_parser() -> argparse.ArgumentParser:
    from . import commands, farm_cmds

    parser = argparse.ArgumentParser(prog="framefarm", description="Render Blender scenes on a farm of machines.")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="submit a scene; with --wait, follow it and download the frames")
    p.add_argument("scene", help="the .blend file to render")
    p.add_argument("--frames", required=True, help="frame range A-B, or a single frame")
    p.add_argument("--step", type=int, default=1, help="render every Nth frame")
    p.add_argument("--chunk", type=int, default=None, help="frames per part (default: chosen by the farm)")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (-1000..1000)")
    p.add_argument("--name", help="job name (default: the scene's file name)")
    p.add_argument("--wait", action="store_true", help="follow the job, then download and extract its frames")
    p.add_argument("--output", help="where --wait extracts the frames (default ./NAME-JOB)")
    p.add_argument("--allow-missing", action="store_true", help="submit even if referenced files are missing")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    _client_options(p)
    p.set_defaults(func=commands.submit)

    p = sub.add_parser("jobs", help="list your jobs")
    p.add_argument("--json", action="store_true")
    _client_options(p)
    p.set_defaults(func=commands.jobs)

    p = sub.add_parser("status", help="show one job")
    p.add_argument("job")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--json", action="store_true")
    _client_options(p)
    p.set_defaults(func=commands.status)

    p = sub.add_parser("cancel", help="cancel a job")
    p.add_argument("job")
    p.add_argument("--json", action="store_true")
    _client_options(p)
    p.set_defaults(func=commands.cancel)

    p = sub.add_parser("download", help="download a finished job's frames")
    p.add_argument("job")
    p.add_argument("--output", required=True, help="folder to extract the frames into")
    p.add_argument("--zip", action="store_true", help="keep the zip instead of extracting it")
    _client_options(p)
    p.set_defaults(func=commands.download)

    p = sub.add_parser("worker", help="run a worker agent on this machine")
    p.add_argument("--blender", default=None,
                   help="Blender executable (default: blender on PATH), or 'farm' for the build the farm publishes")
    p.add_argument("--device", default="auto", choices=["auto", "CPU", "CUDA", "OPTIX", "HIP", "ONEAPI", "METAL"],
                   help="Cycles device (auto picks the best this Blender reports)")
    p.add_argument("--slots", type=int, default=1, help="parts rendered at once")
    p.add_argument("--workdir", default=None, help="cache and scratch folder (default $FRAMEFARM_HOME/worker)")
    p.add_argument("--name", default=None, help="worker name shown by the farm")
    _client_options(p)
    p.set_defaults(func=farm_cmds.worker)

    p = sub.add_parser("gateway", help="run a gateway under gunicorn (settings from FRAMEFARM_* variables)")
    p.add_argument("--bind", default=None, help="host:port (default FRAMEFARM_BIND or 127.0.0.1:8400)")
    p.add_argument("--public-url", default=None, help="URL clients use to reach this gateway")
    p.add_argument("gunicorn_args", nargs=argparse.REMAINDER, help="extra gunicorn arguments after --")
    p.set_defaults(func=farm_cmds.gateway)

    p = sub.add_parser("up", help="run the whole farm on this machine, in the foreground")
    p.add_argument("--port", type=int, default=8400)
    p.add_argument("--workers", type=int, default=1, help="local worker processes")
    p.add_argument("--blender", default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=farm_cmds.up)

    p = sub.add_parser("blender", help="the Blender build the farm publishes for its workers")
    bsub = p.add_subparsers(dest="blender_command", required=True)
    b = bsub.add_parser("publish", help="store a Blender tarball for workers run with --blender farm "
                                        "(needs FRAMEFARM_REDIS_URL and FRAMEFARM_STORAGE, as the gateways have them)")
    b.add_argument("tarball", help="a Blender build as a .tar.xz/.tar.gz (Blender's own Linux tarballs work)")
    b.add_argument("--version", required=True, help="its Blender version, e.g. 4.2.1")
    b.set_defaults(func=farm_cmds.blender_publish)

    p = sub.add_parser("token", help="manage access tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("create", help="create a token; printed once, stored hashed")
    t.add_argument("--role", required=True, choices=["client", "worker", "admin"])
    t.add_argument("--name", default="", help="a label for the token")
    t.set_defaults(func=farm_cmds.token_create)
    t = tsub.add_parser("revoke", help="revoke a token (read from standard input)")
    t.set_defaults(func=farm_cmds.token_revoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_level or ("INFO" if args.command in ("worker", "up", "gateway") else "WARNING"))
    try:
        return args.func(args) or 0
    except UsageError as e:
        parser.exit(2, f"framefarm: error: {e}\n")
    except FarmError as e:
        print(f"framefarm: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
