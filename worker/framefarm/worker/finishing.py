"""A job's finishing task on the worker: the registry of kinds, and running one.

The farm hands a job's finishing part (its `kind` is not "render") only to a worker that
advertised the kind when it registered (`capabilities`). The agent passes such a part
here: its inputs (the results of the job's frame parts) are fetched through the lease
into `inputs/<part index>/`, the kind's function makes the result's files in an output
folder, and the agent zips and uploads them like any part's frames, so leases, heartbeats,
cancel and SIGTERM work for it unchanged.

A kind is a module named in KINDS with two functions, and optionally a third:

    available() -> bool        whether this worker can run it (encode: ffmpeg is installed)
    finish(inputs: Path, output: Path, options: FinishOptions) -> list[Path]
    variants(blender: BlenderInfo, sandbox: Sandbox) -> list[Capability]
                               the more demanding forms of the kind this worker's Blender can
                               run, advertised beside it (merge: "merge-denoise")

`finish` raises render.RenderError (with `deterministic` when no worker could do better)
or RenderCancelled when `options.cancel` is set; `options.job` is the job's own options,
as untrusted as its scene.
"""
from __future__ import annotations

import importlib
import logging
import shutil
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, cast

from framefarm.common.api import FarmAPI
from framefarm.common.api_types import Capability, FinishKind, Lease
from framefarm.common.frameset import PartSpan

from .render import BlenderInfo, RenderCancelled, RenderError
from .sandbox import NO_SANDBOX, Sandbox

log = logging.getLogger("framefarm.worker")

RENDER = "render"  # the kind of every frame part
# kind -> the module that runs it (S adds "merge").
KINDS: dict[FinishKind, str] = {"encode": "framefarm.worker.encode", "merge": "framefarm.worker.still_merge"}
COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class InputPart:
    """One frame part's result, unpacked: its span and the folder holding its files."""

    span: PartSpan
    folder: Path


@dataclass(frozen=True)
class FinishOptions:
    """What a kind's `finish` gets beside its folders: the job's options, and the worker's means."""

    job: Mapping[str, Any]  # the job's `finish.options`, as the client sent them (untrusted)
    span: PartSpan  # the job's frames
    parts: list[InputPart]  # the frame parts' results, in order (each in inputs/<index>/)
    scene: Callable[[], tuple[Path, Path]]  # fetches the job's scene (cached): its folder and main .blend
    blender: BlenderInfo
    sandbox: Sandbox = NO_SANDBOX
    cancel: threading.Event = field(default_factory=threading.Event)
    log_path: Path | None = None

    def frame_files(self) -> dict[int, Path]:
        """Every input frame by number (each frame part's files are named by frame: 0001.png)."""
        found: dict[int, Path] = {}
        for part in self.parts:
            frames = set(part.span.frames())
            for path in part.folder.iterdir():
                stem = path.name.split(".", 1)[0]
                if stem.isdigit() and int(stem) in frames:
                    found[int(stem)] = path
        return found


class Finisher(Protocol):
    def available(self) -> bool: ...

    def finish(self, inputs: Path, output: Path, options: FinishOptions) -> list[Path]: ...


def finisher(kind: str) -> Finisher | None:
    module = KINDS.get(cast(FinishKind, kind))
    return cast(Finisher, importlib.import_module(module)) if module else None


def capabilities(blender: BlenderInfo | None = None, sandbox: Sandbox = NO_SANDBOX) -> list[Capability]:
    """The finishing kinds this worker can run, and the variants of them its Blender `blender`
    can run (none without it), advertised when it registers."""
    found: list[Capability] = []
    for kind in KINDS:
        runner = finisher(kind)
        if runner is not None and runner.available():
            found.append(kind)
            variants = getattr(runner, "variants", None)
            if variants is not None and blender is not None:
                found.extend(variants(blender, sandbox))
    return found


def run(api: FarmAPI, part: Lease, folder: Path, *, scene: Callable[[], tuple[Path, Path]], blender: BlenderInfo,
        sandbox: Sandbox = NO_SANDBOX, cancel: threading.Event | None = None) -> list[Path]:
    """Run the finishing part `part` in `folder`: fetch its inputs, run its kind; the result's files."""
    kind = part.get("kind", RENDER)
    runner = finisher(kind)
    if runner is None or not runner.available():
        # The farm hands a kind only to a worker that advertised it: this one no longer can.
        raise RenderError(f"this worker cannot run the finishing task {kind!r}")
    cancel = cancel or threading.Event()
    inputs, output = folder / "inputs", folder / "output"
    output.mkdir(parents=True, exist_ok=True)
    parts = _fetch_inputs(api, part, inputs, cancel)
    options = FinishOptions(part.get("options") or {}, PartSpan.from_json(part.get("span")), parts, scene, blender,
                            sandbox, cancel, folder / "finish.log")
    log.info("part %s: %s from %d part(s)", part["id"], kind, len(parts))
    files = runner.finish(inputs, output, options)
    for path in files:
        if path.resolve().parent != output.resolve():
            raise RenderError(f"the {kind} task made {path.name} outside its output folder")
    return files


def _fetch_inputs(api: FarmAPI, part: Lease, inputs: Path, cancel: threading.Event) -> list[InputPart]:
    found = []
    for item in api.inputs(part["id"], part["token"])["inputs"]:
        if cancel.is_set():
            raise RenderCancelled(f"part {part['id']} cancelled while fetching its inputs")
        folder = inputs / str(int(item["index"]))
        folder.mkdir(parents=True, exist_ok=True)
        archive = inputs / f"{int(item['index'])}.zip"
        api.fetch_input(part["id"], part["token"], int(item["index"]), archive, item.get("url"))
        _unpack(archive, folder)
        archive.unlink()
        found.append(InputPart(PartSpan.from_json(item["span"]), folder))
    return found


def _unpack(archive: Path, folder: Path) -> None:
    """A frame part's result: its frames, plain names only (the farm checked them; `_meta/` is
    the farm's, and anything else is skipped rather than trusted)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or "/" in name or "\\" in name or name.startswith(".") or not name:
                    continue
                with zf.open(info) as src, open(folder / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, COPY_BLOCK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise RenderError(f"a frame part's result could not be read: {e}") from None
