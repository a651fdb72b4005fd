"""gunicorn entry point: `gunicorn -c python:framefarm.gateway.gunicorn_conf framefarm.gateway.wsgi:app`.

gunicorn's config sets up logging; each process builds its own app after the
fork, so its background threads and Redis connections are its own.
"""
from .app import create_app

app = create_app(background=True)
