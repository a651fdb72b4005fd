"""The add-on's pieces that do not touch `bpy`, from the zip as it ships: the task runner
(threads post, the main thread drains) and the per-file job list. The package's
__init__ (which imports bpy) is not run; the modules load under a private name.
Everything that needs Blender is in system/test_addon.py and test_addon_ui.py."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
import types
import zipfile
from pathlib import Path

import pytest

from farmtools import REPO

PACKAGE = "framefarm_addon_under_test"


@pytest.fixture(scope="module")
def addon(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("addon")
    archive = folder / "framefarm_addon.zip"
    subprocess.run([sys.executable, str(REPO / "packaging" / "build_addon.py"), "--output", str(archive)],
                   check=True, capture_output=True, timeout=60)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    package = types.ModuleType(PACKAGE)
    package.__path__ = [str(folder / "framefarm_addon")]
    sys.modules[PACKAGE] = package
    yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]


@pytest.fixture
def runner(addon):
    taskrunner = addon("taskrunner")
    taskrunner.begin()
    yield taskrunner
    taskrunner.end()


# -- the task runner --------------------------------------------------------------------------

def test_a_task_posts_from_its_thread_and_the_drain_delivers_on_this_one(runner) -> None:
    seen: list[tuple[str, int]] = []
    runner.on("unit-count")(lambda n: seen.append((threading.current_thread().name, n)))

    def task(post, upto: int) -> None:
        for n in range(upto):
            post("unit-count", n=n)

    assert runner.start("counter", task, 3)
    assert runner.drain_until(lambda: len(seen) == 3, timeout=10)
    assert seen == [(threading.current_thread().name, n) for n in range(3)]
    assert runner.drain_until(lambda: not runner.running("counter"), timeout=10) and runner.idle()


def test_one_task_per_name_at_a_time(runner) -> None:
    release = threading.Event()
    assert runner.start("held", lambda post: release.wait(10))
    assert not runner.start("held", lambda post: None)
    assert runner.running("he") == ["held"]
    release.set()
    assert runner.drain_until(lambda: not runner.running(), timeout=10)
    assert runner.start("held", lambda post: None)


def test_a_failing_task_and_a_failing_handler_are_reported_not_fatal(runner) -> None:
    errors: list[str] = []
    got: list[int] = []
    runner.on("error")(lambda message: errors.append(message))
    runner.on("unit-bad")(lambda: 1 / 0)
    runner.on("unit-good")(lambda n: got.append(n))

    def task(post) -> None:
        post("unit-bad")
        post("unit-unknown-kind")
        post("unit-good", n=1)
        raise OSError("disk on fire")

    runner.start("faulty", task)
    assert runner.drain_until(lambda: bool(errors), timeout=10)
    assert got == [1]
    assert errors == ["faulty failed: OSError: disk on fire"]


def test_end_drops_what_is_queued_and_stops_watchers(runner) -> None:
    got: list[int] = []
    runner.on("unit-late")(lambda n: got.append(n))
    runner.post("unit-late", n=1)
    runner.end()
    assert runner.stop.is_set() and runner.drain() == 0 and got == []
    runner.begin()
    assert not runner.stop.is_set()


# -- the job list ----------------------------------------------------------------------------

def job(job_id: str, status: str = "running", done: int = 0) -> dict:
    return {"id": job_id, "name": "shot", "status": status, "rev": 1, "waiting_reason": "",
            "frames": {"start": 3, "end": 9, "step": 2, "total": 4, "done": done}}


def test_records_keep_local_fields_and_survive_a_restart(addon, tmp_path: Path) -> None:
    store_mod = addon("jobs_store")
    path = tmp_path / "user" / "jobs.json"
    store = store_mod.JobStore(path)
    store.upsert("/a.blend", store_mod.record_from_job(job("j1")))
    store.set_field("j1", notified=True)
    store.update_job({**job("j1", "done", 4), "download_url": "https://farm/x"})
    assert store.update_job(job("nobody")) is None
    again = store_mod.JobStore(path)
    [rec] = again.records("/a.blend")
    assert (rec["status"], rec["done"], rec["total"], rec["frames"]) == ("done", 4, 4, "3-9")
    assert rec["notified"] is True and rec["download_url"] == "https://farm/x"
    assert again.find("j1") == ("/a.blend", rec) and again.active() == []
    again.remove("j1")
    assert store_mod.JobStore(path).records("/a.blend") == []


def test_a_long_list_drops_the_oldest_finished_jobs_only(addon, tmp_path: Path) -> None:
    store_mod = addon("jobs_store")
    store = store_mod.JobStore(tmp_path / "jobs.json")
    store.upsert("/a.blend", store_mod.record_from_job(job("running-0")))
    for n in range(store_mod.MAX_PER_FILE + 5):
        store.upsert("/a.blend", store_mod.record_from_job(job(f"done-{n}", "done")))
    ids = [r["id"] for r in store.records("/a.blend")]
    assert len(ids) == store_mod.MAX_PER_FILE
    assert ids[0] == f"done-{store_mod.MAX_PER_FILE + 4}" and "running-0" in ids and "done-0" not in ids
    assert store.active() == ["running-0"]


def test_an_unreadable_list_starts_empty_and_is_replaced_whole(addon, tmp_path: Path) -> None:
    store_mod = addon("jobs_store")
    path = tmp_path / "jobs.json"
    path.write_text("{not json")
    store = store_mod.JobStore(path)
    assert store.records("/a.blend") == []
    store.upsert("/a.blend", store_mod.record_from_job(job("j1")))
    assert [r["id"] for r in json.loads(path.read_text())["/a.blend"]] == ["j1"]
    assert [p.name for p in tmp_path.iterdir()] == ["jobs.json"]  # no temporary file left
