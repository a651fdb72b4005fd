"""The web dashboard every gateway serves at `/` (views.py): jobs with live progress and
thumbnails, a job's parts and actions, and (for admins) the workers. Server-rendered HTML
(Jinja, escaped everywhere) with one small script of our own (static/app.js) and no CDN; the
pages are outside the API (openapi.yaml describes /v1, which the contract check guards)."""
from .views import bp

__all__ = ["bp"]
