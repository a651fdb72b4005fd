"""The client API's previews (issue 12: the add-on's thumbnail strip and flipbook) over HTTP, on a
real Redis: the frames that have a preview and each JPEG, read from the done parts' stored
results while the job renders and from the job's previews zip once it is assembled; the signed
link a webhook's `thumbnail_url` carries. Attacks: security/test_attack_previews.py.
"""
from __future__ import annotations

from apitools import bearer, claim, farm_of, put_result, register_worker, scene_bytes, scene_sha, submit
from farmtools import wait_for, zip_bytes
from framefarm.gateway import archive, keys, webhooks

__all__ = ["scene_bytes", "scene_sha"]  # fixtures, imported for pytest

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 60 + b"\xff\xd9"  # what the gateway checks: the magic


def render_part(http, tokens, wid: str, previews: dict[int, bytes]) -> None:
    """Claim the next part and hand in its frames with these previews."""
    part = claim(http, tokens.worker, wid)
    files = {f"{f:04d}.png": f"frame {f}".encode() for f in part["frames"]}
    files.update({f"_meta/previews/{f}.jpg": data for f, data in previews.items() if f in part["frames"]})
    assert put_result(http, tokens.worker, part, zip_bytes(files)).status_code == 200


def listed(http, token: str, job_id: str) -> dict:
    resp = http.get(f"/v1/jobs/{job_id}/previews", headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_previews_appear_as_parts_finish_and_stay_after_the_assembly(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="1-3", chunk=1)
    assert listed(http, tokens.client, job["id"]) == {"frames": [], "fps": None}
    wid = register_worker(http, tokens.worker)
    jpegs = {1: JPEG + b"1", 2: b"not a jpeg", 3: JPEG + b"3"}
    render_part(http, tokens, wid, jpegs)
    first = listed(http, tokens.client, job["id"])["frames"]
    assert len(first) == 1 and first[0] in (1, 3), "one part done: its frame (2's preview is no JPEG)"
    render_part(http, tokens, wid, jpegs)
    render_part(http, tokens, wid, jpegs)
    farm = farm_of(http)
    for when in ("running", "assembled"):
        assert listed(http, tokens.client, job["id"]) == {"frames": [1, 3], "fps": None}, when
        for frame in (1, 3):
            resp = http.get(f"/v1/jobs/{job['id']}/previews/{frame}", headers=bearer(tokens.client))
            assert resp.status_code == 200 and resp.mimetype == "image/jpeg" and resp.data == jpegs[frame], when
        for frame in (2, 4):  # not a JPEG; not a frame of the job
            resp = http.get(f"/v1/jobs/{job['id']}/previews/{frame}", headers=bearer(tokens.client))
            assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "no_preview", when
        wait_for(lambda: archive.assemble_pending(farm) or farm.redis.hget(keys.job(job["id"]), "status") == "done",
                 10, "the assembly")
    assert not list(farm.storage.root.glob("parts/**/*.zip")), "the previews came from the job's previews zip"
    # An admin sees any client's previews.
    assert listed(http, tokens.admin, job["id"])["frames"] == [1, 3]


def test_a_webhooks_thumbnail_is_a_signed_link_to_the_last_frames_preview(http, tokens, scene_sha):
    job = submit(http, tokens.client, scene_sha, frames="1-2", chunk=1)
    farm = farm_of(http)
    with http.application.app_context():  # as the background delivery builds it
        assert webhooks.payload(farm, farm.redis.hgetall(keys.job(job["id"])), "d1")["thumbnail_url"] is None
    wid = register_worker(http, tokens.worker)
    render_part(http, tokens, wid, {1: JPEG + b"1", 2: JPEG + b"2"})
    render_part(http, tokens, wid, {1: JPEG + b"1", 2: JPEG + b"2"})
    with http.application.app_context():
        link = webhooks.payload(farm, farm.redis.hgetall(keys.job(job["id"])), "d2")["thumbnail_url"]
    assert link.startswith(farm.settings.link_base + f"/v1/preview/{job['id']}/2?")
    resp = http.get(link.removeprefix(farm.settings.link_base))  # no token: the signature is the credential
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg" and resp.data == JPEG + b"2"
