"""Which gateways and token a client uses: flags, then FRAMEFARM_* variables,
then the client config that `framefarm up` writes under $FRAMEFARM_HOME."""
from __future__ import annotations

import os
from dataclasses import dataclass

from framefarm.common import home

from .api import FarmAPI
from .http import Client, FarmError


@dataclass(frozen=True)
class ClientConfig:
    gateways: list[str]
    token: str | None

    def api(self, **client_options) -> FarmAPI:
        if not self.token:
            raise FarmError("no token: pass --token, set FRAMEFARM_TOKEN, or run `framefarm up` "
                            "(which writes a client config)")
        return FarmAPI(Client(self.gateways, self.token, **client_options))


def resolve(gateways: list[str] | None = None, token: str | None = None) -> ClientConfig:
    saved = home.read_json(home.client_config_path())
    env_gateways = [g for g in os.environ.get("FRAMEFARM_GATEWAYS", "").split(",") if g.strip()]
    return ClientConfig(
        gateways=list(gateways or env_gateways or saved.get("gateways") or []),
        token=token or os.environ.get("FRAMEFARM_TOKEN") or saved.get("token"),
    )
