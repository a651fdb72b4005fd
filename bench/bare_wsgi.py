"""The least a WSGI app can do with a worker's result: read its body and answer as the gateway
does. `bench/scheduling.py --floor` serves it with gunicorn as the gateway host runs it, to show
what gunicorn and the client cost a cycle before the gateway does anything."""

ANSWER = b'{"ok": true, "job_status": "running", "next": null}'


def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]
