"""`framefarm`: the one command line of the farm.

The artist's commands (submit, estimate, jobs, status, cancel, pause, resume, retry, priority, download;
an admin's workers, drain, undrain) are defined here. The
commands that run the farm's own processes come with the distribution of that role and
join through the ``framefarm.commands`` entry-point group: `framefarm worker` with
framefarm-worker; `framefarm gateway`, `up`, `token` and `blender` with framefarm-gateway.
An artist's laptop installs neither, and `framefarm worker` there says which package to
install instead of failing on a missing Flask or Redis.

An entry point named NAME is a function that takes the subparsers and adds the command
NAME (see framefarm.worker.cli, framefarm.gateway.cli). Commands may set
``default_log_level`` (long-running ones log at INFO).

Exit codes: 0 success, 1 the farm said no (a failed or cancelled job, an
unreachable farm, a refused request), 2 bad usage, a command whose package is missing,
or a scene that cannot be submitted as it is (a corrupt .blend, missing files).
"""
from __future__ import annotations

import argparse
import logging
import sys
from importlib import metadata
from typing import Callable

from framefarm.client import formats
from framefarm.client.packing import PackError
from framefarm.client.submission import MissingFiles
from framefarm.common.http import FarmError
from framefarm.common import logs

from .usage import ROLE_COMMANDS, UsageError, client_options

log = logging.getLogger("framefarm.cli")

ENTRY_POINTS = "framefarm.commands"

AddCommand = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _plugins() -> dict[str, tuple[str, AddCommand | ImportError]]:
    """The installed ``framefarm.commands`` entry points: name -> (distribution, the loaded
    function or why it would not load)."""
    found: dict[str, tuple[str, AddCommand | ImportError]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINTS):
        if ep.name in found:  # one installation seen twice on sys.path
            continue
        dist = ep.dist.name if ep.dist else ep.module
        try:
            found[ep.name] = (dist, ep.load())
        except ImportError as e:
            found[ep.name] = (dist, e)
    return found


def _missing(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help: str,
             dist: str, why: ImportError | None) -> None:
    """A stand-in for a command whose distribution is not installed: it takes any
    arguments and answers with the package to install (exit 2)."""
    p = sub.add_parser(name, help=f"{help} [needs {dist}]", add_help=False)
    reason = f" ({why})" if why else ""
    p.set_defaults(missing=f"`framefarm {name}` needs the {dist} package, which is not installed{reason}: "
                           f"pip install {dist}")


def _command(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str, help: str,
             func: Callable[[argparse.Namespace], int], *positional: str) -> argparse.ArgumentParser:
    """A command taking `positional` arguments, --json and the client's options."""
    p = sub.add_parser(name, help=help)
    for arg in positional:
        p.add_argument(arg)
    p.add_argument("--json", action="store_true")
    client_options(p)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    from . import commands

    parser = argparse.ArgumentParser(prog="framefarm", description="Render Blender scenes on a farm of machines.")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="submit a scene; with --wait, follow it and download the frames")
    p.add_argument("scene", help="the .blend file to render")
    p.add_argument("--frames", help="frame range A-B, or a single frame (required unless --still)")
    p.add_argument("--order", choices=("preview", "sequential"), default=None,
                   help="preview (the farm's default): the first, last and middle frames first, then bisecting, "
                        "so the whole shot shows early; sequential: in frame order")
    p.add_argument("--still", nargs="?", const="", metavar="FRAME",
                   help="render one frame (default: the scene's current frame) split into pieces that several "
                        "workers render at once, merged into one image in the scene's format")
    p.add_argument("--pieces", type=int, metavar="N",
                   help="with --still: split the frame into N pieces (1-64; default: one per live worker)")
    p.add_argument("--step", type=int, default=1, help="render every Nth frame")
    p.add_argument("--chunk", type=int, default=None, help="frames per part (default: chosen by the farm)")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (-1000..1000)")
    p.add_argument("--max-frame-time", type=int, default=None, metavar="SECONDS",
                   help="fail a part whose frame takes longer than this on a worker (default: no limit)")
    p.add_argument("--part-time", type=int, default=None, metavar="SECONDS",
                   help="without --chunk: size parts to take about this long each, from the measured time per "
                        "frame (10-86400; default: the farm's, 180)")
    p.add_argument("--name", help="job name (default: the scene's file name)")
    p.add_argument("--wait", action="store_true", help="follow the job, then download and extract its frames")
    p.add_argument("--output", help="where --wait extracts the frames (default ./NAME-JOB)")
    p.add_argument("--allow-missing", action="store_true",
                   help="submit even if referenced files are missing; the farm renders without them, as Blender does")
    p.add_argument("--movie", action="store_true",
                   help="also make an H.264 MP4 preview of the frames at the scene's frame rate (on a worker with "
                        "ffmpeg), beside them in the result and with its own link")
    p.add_argument("--keep-frames", action="store_true",
                   help="a scene set to a video output: keep its frames (lossless PNG) beside the movie the farm "
                        "makes (default: the movie alone)")
    p.add_argument("--format", type=str.upper, choices=formats.IMAGE_FORMATS, metavar="FORMAT",
                   help="render frames in this image format instead of the scene's (Blender's -F): "
                        + ", ".join(formats.IMAGE_FORMATS))
    p.add_argument("--notify", metavar="URL",
                   help="POST to this URL when the job ends (done, failed, cancelled), signed with your key "
                        "(`framefarm webhooks key`)")
    p.add_argument("--notify-format", choices=("json", "slack", "discord"), default="json",
                   help="json (the farm's payload) or a message for a Slack or Discord incoming webhook")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    client_options(p)
    p.set_defaults(func=commands.submit)

    p = sub.add_parser("estimate", help="render a few sample frames, then say how long and how much the rest "
                                        "would take; `framefarm resume JOB` renders the rest")
    p.add_argument("scene", help="the .blend file to render")
    p.add_argument("--frames", required=True, help="frame range A-B of the whole render")
    p.add_argument("--step", type=int, default=1, help="render every Nth frame")
    p.add_argument("--chunk", type=int, default=None, help="frames per part of the rest (default: chosen by the farm)")
    p.add_argument("--part-time", type=int, default=None, metavar="SECONDS",
                   help="without --chunk: size the rest's parts to take about this long each (10-86400)")
    p.add_argument("--order", choices=("preview", "sequential"), default=None,
                   help="the order the rest is rendered in once resumed (default: the farm's, preview)")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (-1000..1000)")
    p.add_argument("--name", help="job name (default: the scene's file name)")
    p.add_argument("--format", type=str.upper, choices=formats.IMAGE_FORMATS, metavar="FORMAT",
                   help="render frames in this image format instead of the scene's (Blender's -F)")
    p.add_argument("--allow-missing", action="store_true",
                   help="submit even if referenced files are missing; the farm renders without them, as Blender does")
    p.add_argument("--json", action="store_true", help="print the job, with its estimate, as JSON")
    client_options(p)
    p.set_defaults(func=commands.estimate)

    p = sub.add_parser("jobs", help="list your jobs")
    p.add_argument("--json", action="store_true")
    client_options(p)
    p.set_defaults(func=commands.jobs)

    p = sub.add_parser("status", help="show one job")
    p.add_argument("job")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--json", action="store_true")
    client_options(p)
    p.set_defaults(func=commands.status)

    p = sub.add_parser("cancel", help="cancel a job")
    p.add_argument("job")
    p.add_argument("--json", action="store_true")
    client_options(p)
    p.set_defaults(func=commands.cancel)

    for name, help in (("pause", "pause a job: no new parts are handed out, parts rendering finish"),
                       ("resume", "resume a paused job, or render the rest of an estimated one"),
                       ("retry", "retry a failed job's failed parts"),
                       ("priority", "change a job's priority (higher runs first)")):
        p = _command(sub, name, help, commands.job_action, "job")
        if name == "priority":
            p.add_argument("priority", type=int, help="from -1000 to 1000 (a client token: the farm's client range)")
    _command(sub, "workers", "list the live workers (an admin token)", commands.workers)
    _command(sub, "drain", "drain a worker: it finishes its parts and takes no more (an admin token)",
             commands.drain, "worker")
    _command(sub, "undrain", "let a drained worker take parts again (an admin token)", commands.drain, "worker")

    p = _command(sub, "webhooks", "the key that signs your webhooks; an admin's farm-wide subscriptions",
                 commands.webhooks, "action")
    p.add_argument("target", nargs="?", help="add: the URL; remove: the subscription's id")
    p.add_argument("--format", choices=("json", "slack", "discord"), default="json", help="add: the payload's format")
    p.epilog = "actions: key (print your signing key), list, add URL, remove ID (list/add/remove: an admin token)"

    p = sub.add_parser("download", help="download a finished job's frames")
    p.add_argument("job")
    p.add_argument("--output", required=True, help="folder to extract the frames into")
    p.add_argument("--zip", action="store_true", help="keep the zip instead of extracting it")
    client_options(p)
    p.set_defaults(func=commands.download)

    plugins = _plugins()
    for name in [*ROLE_COMMANDS, *sorted(set(plugins) - set(ROLE_COMMANDS))]:
        dist, help = ROLE_COMMANDS.get(name, ("", "a command of another distribution"))
        dist, add = plugins.get(name, (dist, None))
        if add is None or isinstance(add, ImportError):
            _missing(sub, name, help, dist, add)
        else:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Known args first: a stand-in for a missing command takes whatever follows it.
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "missing", None):
        print(f"framefarm: {args.missing}", file=sys.stderr)
        return 2
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logs.setup(args.log_level or getattr(args, "default_log_level", "WARNING"))
    try:
        return args.func(args) or 0
    except (UsageError, PackError) as e:  # PackError: the scene itself is unusable (a corrupt .blend)
        parser.exit(2, f"framefarm: error: {e}\n")
    except MissingFiles as e:  # one line each: an artist works down the list
        listing = "".join(f"\n  {ref}" for ref in e.files)
        parser.exit(2, f"framefarm: error: the scene references {len(e.files)} file(s) that do not exist:"
                       f"{listing}\nfix them, or submit with --allow-missing to render without them, "
                       "as Blender does\n")
    except FarmError as e:
        print(f"framefarm: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
