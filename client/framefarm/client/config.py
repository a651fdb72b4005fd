"""Which gateways and token a client uses: flags, then FRAMEFARM_* variables,
then the client config that `framefarm up` writes under $FRAMEFARM_HOME.

The same goes for the transport options: a private CA's bundle (--ca-bundle,
FRAMEFARM_CA_BUNDLE, "ca_bundle") and gateway discovery (--no-discovery,
FRAMEFARM_DISCOVERY=off, "discovery": false), which is on unless turned off."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from framefarm.common import home

from framefarm.common.api import FarmAPI
from framefarm.common.http import Client, FarmError


@dataclass(frozen=True)
class ClientConfig:
    gateways: list[str]
    token: str | None
    # How long to keep trying when no gateway answers (a restarting farm comes back).
    retry_for: float = 60.0
    # Adopt the gateways the farm announces (GET /v1/gateways) beside the configured ones.
    discover: bool = True
    ca_bundle: str | None = None

    def api(self, **client_options) -> FarmAPI:
        if not self.token:
            raise FarmError("no token: pass --token, set FRAMEFARM_TOKEN, or run `framefarm up` "
                            "(which writes a client config)")
        return FarmAPI(Client(self.gateways, self.token, retry_for=self.retry_for, discover=self.discover,
                              ca_bundle=self.ca_bundle, **client_options))


def resolve(gateways: list[str] | None = None, token: str | None = None, *, discover: bool | None = None,
            ca_bundle: str | None = None) -> ClientConfig:
    saved = home.read_json(home.client_config_path())
    env_gateways = [g for g in os.environ.get("FRAMEFARM_GATEWAYS", "").split(",") if g.strip()]
    if discover is None:
        discover = _switch(os.environ.get("FRAMEFARM_DISCOVERY"), saved.get("discovery", True))
    return ClientConfig(
        gateways=list(gateways or env_gateways or saved.get("gateways") or []),
        token=token or os.environ.get("FRAMEFARM_TOKEN") or saved.get("token"),
        retry_for=_seconds(os.environ.get("FRAMEFARM_RETRY_FOR"), 60.0),
        discover=discover,
        ca_bundle=ca_bundle or os.environ.get("FRAMEFARM_CA_BUNDLE") or saved.get("ca_bundle") or None,
    )


def from_args(args: argparse.Namespace) -> ClientConfig:
    """The config for a command given the shared client options (framefarm.cli.usage.client_options)."""
    return resolve(args.gateways, args.token, discover=False if args.no_discovery else None,
                   ca_bundle=args.ca_bundle)


def _switch(raw: str | None, default: bool) -> bool:
    if raw is None or not raw.strip():
        return bool(default)
    value = raw.strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise FarmError(f"FRAMEFARM_DISCOVERY={raw!r}: use on or off")


def _seconds(raw: str | None, default: float) -> float:
    try:
        return float(raw) if raw else default
    except ValueError:
        raise FarmError(f"FRAMEFARM_RETRY_FOR={raw!r} is not a number of seconds") from None
