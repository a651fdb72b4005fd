"""Endpoints for webhooks (webhooks.py): the key that signs yours, and the farm-wide subscriptions."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from . import webhooks
from .auth import requires
from .errors import not_found
from .farm import current_farm

bp = Blueprint("webhooks", __name__, url_prefix="/v1")


@bp.get("/webhooks/key")
@requires("client")
def signing_key():
    """The key that signs the webhooks this token's owner set: a receiver checks with it."""
    return jsonify({"key": webhooks.owner_key(current_farm(), g.identity.owner).hex(),
                    "algorithm": "HMAC-SHA256 over '<X-Framefarm-Timestamp>.<body>'"})


def _view(sid: str, t: webhooks.Target) -> dict:
    return {"id": sid, "url": t.url, "format": t.format, "owner": t.owner}


@bp.get("/webhooks")
@requires("admin")
def list_subscriptions():
    return jsonify({"webhooks": [_view(sid, t) for sid, t in webhooks.subscriptions(current_farm()).items()]})


@bp.post("/webhooks")
@requires("admin")
def subscribe():
    """A farm-wide subscription: every job's end, whoever submitted it, signed with the admin's key."""
    f, body = current_farm(), request.get_json(silent=True) or {}
    sid = webhooks.subscribe(f, body["url"], body.get("format", "json"), g.identity.owner)
    return jsonify(_view(sid, webhooks.subscriptions(f)[sid])), 201


@bp.delete("/webhooks/<sid>")
@requires("admin")
def unsubscribe(sid: str):
    if not webhooks.unsubscribe(current_farm(), sid):
        raise not_found(f"webhook subscription {sid}")
    return jsonify({"ok": True})
