"""Where Framefarm keeps a user's data and settings: $FRAMEFARM_HOME.

Defaults to the user's data directory ($XDG_DATA_HOME/framefarm, else
~/.local/share/framefarm). `framefarm up` writes the local farm's settings and a
client config here, so `framefarm submit` by the same user needs no flags.
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def home() -> Path:
    env = os.environ.get("FRAMEFARM_HOME")
    if env:
        return Path(env).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "framefarm"


def client_config_path() -> Path:
    return home() / "client.json"


def farm_config_path() -> Path:
    """Settings of the local farm started by `framefarm up` (its Redis URL)."""
    return home() / "farm.json"


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SystemExit(f"cannot read {path}: {e}")


def write_private_json(path: Path, data: dict) -> None:
    """Write a file that holds a secret: created 0600 before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)
