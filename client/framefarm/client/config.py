"""Which gateways and token a client uses: flags, then FRAMEFARM_* variables,
then the client config that `framefarm up` writes under $FRAMEFARM_HOME."""
from __future__ import annotations

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

    def api(self, **client_options) -> FarmAPI:
        if not self.token:
            raise FarmError("no token: pass --token, set FRAMEFARM_TOKEN, or run `framefarm up` "
                            "(which writes a client config)")
        return FarmAPI(Client(self.gateways, self.token, retry_for=self.retry_for, **client_options))


def resolve(gateways: list[str] | None = None, token: str | None = None) -> ClientConfig:
    saved = home.read_json(home.client_config_path())
    env_gateways = [g for g in os.environ.get("FRAMEFARM_GATEWAYS", "").split(",") if g.strip()]
    return ClientConfig(
        gateways=list(gateways or env_gateways or saved.get("gateways") or []),
        token=token or os.environ.get("FRAMEFARM_TOKEN") or saved.get("token"),
        retry_for=_seconds(os.environ.get("FRAMEFARM_RETRY_FOR"), 60.0),
    )


def _seconds(raw: str | None, default: float) -> float:
    try:
        return float(raw) if raw else default
    except ValueError:
        raise FarmError(f"FRAMEFARM_RETRY_FOR={raw!r} is not a number of seconds") from None
