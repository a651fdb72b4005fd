"""What every `framefarm` command shares, including the commands other distributions add.

The worker's and the gateway's commands live in their own distributions and join the
`framefarm` command through the ``framefarm.commands`` entry points (see main.py); they
import their usage error and the client options from here, so that every command reports
bad usage and takes --gateway/--token the same way.
"""
from __future__ import annotations

import argparse


class UsageError(Exception):
    """Bad usage found after parsing (a missing file, a malformed range): exit 2."""


def client_options(p: argparse.ArgumentParser) -> None:
    """--gateway and --token, for every command that talks to the farm's gateways."""
    p.add_argument("--gateway", action="append", dest="gateways", metavar="URL",
                   help="gateway URL (repeat for several; default: FRAMEFARM_GATEWAYS or the local farm)")
    p.add_argument("--token", help="access token (default: FRAMEFARM_TOKEN or the local farm's)")
