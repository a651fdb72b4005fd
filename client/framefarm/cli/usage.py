"""What every `framefarm` command shares, including the commands other distributions add.

The worker's and the gateway's commands live in their own distributions and join the
`framefarm` command through the ``framefarm.commands`` entry points (see main.py); they
import their usage error and the client options from here, so that every command reports
bad usage and takes --gateway/--token the same way.
"""
from __future__ import annotations

import argparse


# The commands other distributions bring, in the order `framefarm --help` lists them:
# name -> (distribution, what it does). The one description of each, used by the command
# itself and, with the package to install, by its stand-in where that package is absent.
ROLE_COMMANDS: dict[str, tuple[str, str]] = {
    "worker": ("framefarm-worker", "run a worker agent on this machine"),
    "gateway": ("framefarm-gateway", "run a gateway under gunicorn (settings from FRAMEFARM_* variables)"),
    "up": ("framefarm-gateway", "run the whole farm on this machine, in the foreground"),
    "blender": ("framefarm-gateway", "the Blender build the farm publishes for its workers"),
    "token": ("framefarm-gateway", "manage access tokens"),
}


class UsageError(Exception):
    """Bad usage found after parsing (a missing file, a malformed range): exit 2."""


def client_options(p: argparse.ArgumentParser) -> None:
    """--gateway, --token and the transport options, for every command that talks to the farm's gateways."""
    p.add_argument("--gateway", action="append", dest="gateways", metavar="URL",
                   help="gateway URL (repeat for several; default: FRAMEFARM_GATEWAYS or the local farm)")
    p.add_argument("--token", help="access token (default: FRAMEFARM_TOKEN or the local farm's)")
    p.add_argument("--ca-bundle", metavar="FILE", help="also trust the CA certificates in this PEM file for "
                   "https gateways (default: FRAMEFARM_CA_BUNDLE)")
    p.add_argument("--no-discovery", action="store_true", help="talk only to the gateways given, never to "
                   "those the farm announces (default: FRAMEFARM_DISCOVERY, on)")
