"""The whole farm for real: gunicorn gateway, `framefarm worker` processes with
Debian's Blender, Redis, and the `framefarm` command line."""
from __future__ import annotations

import json
import os
import signal

from farmtools import check_frames, framefarm_cli, processes_mentioning, wait_for
from framefarm.gateway import keys, parts


def test_frames_250_to_262_in_chunks_of_4_on_two_workers(cluster, scenes, tmp_path):
    scene = scenes("--animated", "--size", "48")
    cluster.add_gateway()
    cluster.add_worker()
    cluster.add_worker()
    out = tmp_path / "frames"
    res = framefarm_cli("submit", str(scene), "--frames", "250-262", "--chunk", "4", "--wait",
                        "--output", str(out), "--json", env=cluster.client_env())
    assert res.returncode == 0, res.stderr + cluster.logs()
    job = json.loads(res.stdout)
    assert job["status"] == "done"
    assert job["frames"] == {"start": 250, "end": 262, "step": 1, "total": 13, "done": 13}
    assert job["parts"]["total"] == 4
    check_frames(out, list(range(250, 263)), (48, 48))
    # Assembled parts are deleted; only the scene files and the archive remain.
    storage = cluster.root / "storage"
    assert not list(storage.glob("parts/**/*.zip"))
    assert (storage / "archives" / f"{job['id']}.zip").is_file()


def test_step_and_a_range_not_starting_at_one(cluster, scenes, tmp_path):
    scene = scenes("--animated", "--size", "48")
    cluster.add_gateway()
    cluster.add_worker()
    out = tmp_path / "frames"
    # Three parts (7,10 | 13,16 | 19): a part that starts at the wrong frame renders the wrong one.
    res = framefarm_cli("submit", str(scene), "--frames", "7..20", "--step", "3", "--chunk", "2", "--wait",
                        "--output", str(out), env=cluster.client_env())
    assert res.returncode == 0, res.stderr + cluster.logs()
    assert "5 frames in 3 parts" in res.stderr
    check_frames(out, [7, 10, 13, 16, 19], (48, 48))
    assert str(out.resolve()) in res.stdout
    # Piped, the progress is plain lines for a log: no bar, no control codes.
    assert "\x1b" not in res.stderr and "\r" not in res.stderr
    assert "5/5 frames  done" in res.stderr.splitlines()


def test_scene_with_denoising_on_renders_on_debians_blender(cluster, scenes, tmp_path):
    scene = scenes("--denoise", "--size", "48")
    cluster.add_gateway()
    cluster.add_worker()
    out = tmp_path / "frames"
    res = framefarm_cli("submit", str(scene), "--frames", "1-2", "--wait", "--output", str(out),
                        env=cluster.client_env())
    assert res.returncode == 0, res.stderr + cluster.logs()
    check_frames(out, [1, 2], (48, 48))


def test_scene_without_camera_fails_the_job_with_blenders_message(cluster, scenes, redis_client):
    scene = scenes("--no-camera")
    cluster.add_gateway()
    cluster.add_worker()
    res = framefarm_cli("submit", str(scene), "--frames", "1-12", "--chunk", "4", "--wait", "--json",
                        env=cluster.client_env())
    assert res.returncode == 1
    job = json.loads(res.stdout)
    assert job["status"] == "failed"
    assert "Cannot render, no camera" in job["error"]
    assert "Cannot render, no camera" in res.stderr
    # Deterministic: failed at the first attempt, not retried three times.
    attempts = [int(redis_client.hget(keys.part(keys.part_id(job["id"], i)), "attempts") or 0) for i in range(3)]
    assert sum(attempts) == 1


def test_killed_workers_part_is_rendered_by_the_other_after_its_lease(cluster, scenes, redis_client, tmp_path):
    # Slow enough per frame that the kill lands in the middle of a part.
    scene = scenes("--animated", "--size", "64", "--samples", "64")
    cluster.add_gateway()
    victim = cluster.add_worker()
    survivor = cluster.add_worker()
    env = cluster.client_env()
    res = framefarm_cli("submit", str(scene), "--frames", "1-8", "--chunk", "4", "--json", env=env)
    assert res.returncode == 0, res.stderr
    job_id = json.loads(res.stdout)["id"]

    def victim_part():
        for i in range(2):
            wid = redis_client.hget(keys.part(keys.part_id(job_id, i)), "worker")
            if wid and redis_client.hget(keys.worker(wid.decode()), "name") == b"test-0":
                return keys.part_id(job_id, i)
        return None

    pid = wait_for(victim_part, 60, "the first worker to take a part")
    os.kill(victim.pid, signal.SIGKILL)
    victim.proc.wait()
    # Its Blender dies with it rather than rendering a part that is about to be reassigned.
    wait_for(lambda: not processes_mentioning(str(cluster.root / "worker-0")), 10, "the victim's Blender to exit")
    out = tmp_path / "frames"
    res = framefarm_cli("status", job_id, "--wait", env=env, timeout=180)
    assert res.returncode == 0, res.stderr + cluster.logs()
    assert int(redis_client.hget(keys.part(pid), "attempts")) == 1  # the expired lease counted
    res = framefarm_cli("download", job_id, "--output", str(out), env=env)
    assert res.returncode == 0, res.stderr
    check_frames(out, list(range(1, 9)), (64, 64))
    assert survivor.alive()


def test_cancel_stops_blender_on_the_worker_within_a_heartbeat(cluster, scenes, redis_client):
    scene = scenes("--animated", "--size", "64", "--samples", "64")
    cluster.add_gateway()
    cluster.add_worker()
    env = cluster.client_env()
    res = framefarm_cli("submit", str(scene), "--frames", "1-40", "--chunk", "20", "--json", env=env)
    assert res.returncode == 0, res.stderr
    job_id = json.loads(res.stdout)["id"]
    workdir = str(cluster.root / "worker-0")
    wait_for(lambda: [p for p in processes_mentioning(workdir) if p != cluster.workers[0].pid
                      and "blender" in open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")],
             60, "Blender to start rendering the first part")
    res = framefarm_cli("cancel", job_id, "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "cancelled"
    # Heartbeats come every second in this cluster; Blender must be gone soon after.
    wait_for(lambda: processes_mentioning(workdir) == [cluster.workers[0].pid], 10, "Blender to be stopped")
    # The queued part left with its job's queue; its hash is not rewritten, it reads as the job's status.
    assert not redis_client.exists(keys.job_queue(job_id))
    state = redis_client.hget(keys.part(keys.part_id(job_id, 1)), "state").decode()
    assert parts.shown_state(state, redis_client.hget(keys.job(job_id), "status").decode()) == "cancelled"
    assert cluster.workers[0].alive()
