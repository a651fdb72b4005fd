"""Pack a .blend with everything it references, as a content-addressed manifest.

A worker has none of the artist's folders, so a job is a *job folder*: the main .blend plus
every file it references (textures, linked libraries and their own textures, sounds,
caches, movie clips), laid out so that each ``//relative`` path in those .blend files
resolves inside the folder. The folder's root is the main .blend's directory: files under
it keep their relative paths; files outside it (absolute paths, ``//../x.png``) go under
``_outside_project/`` with the root stripped from their absolute path, and every .blend
that refers to them is rewritten to point there.

Blender Asset Tracer (BAT) does the tracing and the rewriting: its ``Packer.strategise()``
decides where each asset goes and which .blend files need new paths, and ``execute()``
rewrites those .blend files into a temporary folder and then hands every file to a
*transferer*. Ours copies nothing; it only records "this local file goes to that place in
the job", because the upload is content-addressed and a texture of gigabytes should be
hashed and streamed from where it lies, not duplicated on the artist's disk first. Only the
rewritten .blend files are written, as copies under ``workdir``; the artist's own files
are only ever read.

Pure Python (stdlib + BAT): this also runs inside Blender's bundled Python in the add-on.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from blender_asset_tracer import blendfile as bat_blendfile
from blender_asset_tracer import bpathlib
from blender_asset_tracer import pack as bat_pack
from blender_asset_tracer.pack import transfer as bat_transfer
from blender_asset_tracer.trace import result as bat_result

from framefarm.common.blendfile import BlendFileError, read_blend_info
from framefarm.common.hashing import sha256_file

__all__ = ["OUTSIDE_PROJECT", "PackError", "PackedScene", "check_blend_file", "describe_block", "pack_scene"]

OUTSIDE_PROJECT = "_outside_project"  # BAT's own folder name for assets outside the root

# BAT logs each missing file as a bare path; PackedScene.missing says more (the data-block,
# the .blend), and the caller reports that, so BAT's lines would only repeat it worse.
logging.getLogger("blender_asset_tracer.pack").addFilter(
    lambda record: not str(record.msg).startswith("Missing file"))

# BAT caches open .blend files in a module-level dict and pack_scene empties it when done,
# so two packs at once in one process (add-on and a script) must take turns.
_BAT_LOCK = threading.Lock()


class PackError(Exception):
    """The scene cannot be packed: the file is missing, is not a .blend, or BAT failed."""


@dataclass
class PackedScene:
    """A packed scene: where each file of the job folder comes from on this machine.

    ``files`` maps a POSIX path relative to the job folder to a local file: the artist's
    original for anything unchanged, a rewritten copy under ``workdir`` for .blend files
    whose paths had to change. ``missing`` lists references that point at nothing on
    disk; packing still succeeds so the caller can decide whether that is fatal.
    """

    main: str
    files: dict[str, Path]
    missing: list[str] = field(default_factory=list)
    _hashes: dict[Path, str] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)

    def manifest(self) -> dict[str, str]:
        """Relative path -> SHA-256 hex. Hashes are cached per local file, because the
        submit path asks for the manifest more than once (which hashes are missing on the
        farm, then the job itself) and hashing big caches twice would double the wait."""
        result = {}
        for relpath in sorted(self.files):
            local = self.files[relpath]
            if local not in self._hashes:
                self._hashes[local] = sha256_file(local)
            result[relpath] = self._hashes[local]
        return result


def pack_scene(blend: Path, workdir: Path) -> PackedScene:
    """Trace ``blend`` and everything it references; see the module docstring.

    ``workdir`` receives the rewritten .blend copies at their job-relative paths; it should
    be a folder the caller owns (e.g. a temporary directory) and is never cleaned here.
    """
    blend = bpathlib.make_absolute(Path(blend))
    check_blend_file(blend)
    workdir = bpathlib.make_absolute(Path(workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    with _BAT_LOCK:
        return _run_packer(blend, workdir)


def _run_packer(blend: Path, workdir: Path) -> PackedScene:
    """strategise() + execute() with every BAT failure turned into a PackError."""
    packer = _ManifestPacker(blend, blend.parent, workdir)
    try:
        with packer:
            try:
                packer.strategise()
                packer.execute()
            except bat_blendfile.exceptions.BlendFileError as exc:  # a .blend, its own or a library
                raise PackError(f"{exc.filepath} is corrupt: Blender Asset Tracer cannot read it "
                                f"({exc.args[0]})") from exc
            except (bat_pack.Aborted, bat_transfer.FileTransferError, OSError) as exc:
                raise PackError(f"could not trace the dependencies of {blend}: {exc}") from exc
            except Exception as exc:  # BAT asserts and NotImplemented on odd files
                raise PackError(f"Blender Asset Tracer failed on {blend}: "
                                f"{type(exc).__name__}: {exc}") from exc
            return _collect(packer, workdir)
    finally:
        # BAT keeps every .blend it opened in a module-level cache, open. Left there, a
        # second pack in the same process (the add-on) would see the old file contents.
        bat_blendfile.close_all_cached()


def check_blend_file(path: Path) -> None:
    """Refuse early, with a message an artist understands, anything that is not a .blend
    (BAT's own error for a PNG is a bare "not a blend file" deep in a traceback).

    Only the file header is read, through compression (the gateway checks the whole file
    when it arrives). A zstd-compressed file (Blender 3.0+ 'Compress') needs the
    ``zstandard`` module, as BAT does to read it: Blender bundles it, a plain Python may
    not have it, so say exactly what is missing instead of failing later."""
    if not path.exists():
        raise PackError(f"scene file not found: {path}")
    if not path.is_file():
        raise PackError(f"not a file: {path}")
    try:
        read_blend_info(path, check_complete=False)
    except BlendFileError as exc:
        raise PackError(f"cannot pack {path}: {exc}") from exc
    except OSError as exc:
        raise PackError(f"cannot read {path}: {exc}") from exc
    except ImportError as exc:
        if exc.name != "zstandard":
            raise
        raise PackError(f"{path} is saved compressed (Zstandard) and the 'zstandard' Python "
                        "module is not installed: install it, or save the file without "
                        "compression") from None


# The two-letter ID codes Blender puts before a data-block's name, in the words of its UI.
_ID_KINDS = {"IM": "image", "SQ": "sequencer strip", "OB": "object", "LI": "library", "SO": "sound", "MC": "movie clip",
             "VF": "font", "CF": "cache file", "VO": "volume", "SC": "scene", "ME": "mesh",
             "MA": "material", "NT": "node group", "TE": "texture", "PA": "particle settings",
             "WO": "world", "TX": "text"}


def describe_block(block_name: bytes) -> str:
    """'image "wood.png"' for BAT's b'IMwood.png': the data-block as the artist knows it.
    A name without an ID code (a sequencer strip, a modifier) is shown as it is."""
    name = bytes(block_name).split(b"\0", 1)[0].decode("utf-8", "replace")
    kind = _ID_KINDS.get(name[:2])
    return f'{kind} "{name[2:]}"' if kind else f'"{name}"'


class _RecordingTransferer(bat_transfer.FileTransferer):
    """A BAT transferer that notes each (source, destination) instead of copying.

    BAT queues originals as copies and its rewritten temporary .blend files as moves; the
    thread it starts has nothing to do, so ``run`` returns at once."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[tuple[Path, PurePath]] = []
        self.moves: list[tuple[Path, PurePath]] = []

    def run(self) -> None:
        return

    def queue_copy(self, src: Path, dst: PurePath) -> None:
        self.copies.append((Path(src), dst))

    def queue_move(self, src: Path, dst: PurePath) -> None:
        self.moves.append((Path(src), dst))


class _ManifestPacker(bat_pack.Packer):
    """BAT's Packer with our transferer, human-readable missing files, no pack-info.txt,
    and absolute references to files inside the project kept at their project path."""

    def __init__(self, blend: Path, project: Path, target: Path) -> None:
        super().__init__(blend, project, str(target))
        self.recorder = _RecordingTransferer()
        self.missing_references: set[str] = set()

    def _create_file_transferer(self) -> bat_transfer.FileTransferer:
        return self.recorder

    def _write_info_file(self) -> None:
        """BAT adds a pack-info.txt for humans; a job folder has no use for it."""

    def _visit_asset(self, asset_path: Path, usage: bat_result.BlockUsage) -> None:
        super()._visit_asset(asset_path, usage)
        self._note_if_missing(asset_path, usage)

    def _visit_sequence(self, asset_path: Path, usage: bat_result.BlockUsage) -> None:
        super()._visit_sequence(asset_path, usage)
        self._note_if_missing(asset_path, usage)

    def _note_if_missing(self, asset_path: Path, usage: bat_result.BlockUsage) -> None:
        """BAT records missing files as bare absolute paths; an artist needs the path as
        written in Blender, the data-block that uses it and which .blend holds it to find
        and fix the reference."""
        if asset_path in self.missing_files:
            written = bytes(usage.asset_path).decode("utf-8", "replace")
            holder = self._project_relative(Path(usage.block.bfile.filepath))
            self.missing_references.add(f"{written} (used by {describe_block(usage.block_name)} "
                                        f"in {holder})")

    def _project_relative(self, path: Path) -> str:
        try:
            return bpathlib.make_absolute(path).relative_to(self.project).as_posix()
        except ValueError:
            return str(path)

    def _find_new_paths(self) -> None:
        """BAT sends every absolutely-referenced asset to ``_outside_project``, even one
        inside the project. Keep those at their project path instead: the job folder then
        mirrors the artist's layout, and the referencing .blend still gets a relative
        path rewritten in, which is what the worker needs."""
        super()._find_new_paths()
        project = bpathlib.make_absolute(self.project)
        for path in self._new_location_paths:
            try:
                inside = bpathlib.make_absolute(path).relative_to(project)
            except ValueError:
                continue
            self._actions[path].new_path = Path(self._target_path, inside)


def _collect(packer: _ManifestPacker, workdir: Path) -> PackedScene:
    """Turn what the transferer recorded into a PackedScene, moving the rewritten .blend
    files out of BAT's temporary folder (deleted when the packer closes) into workdir."""
    target = Path(packer._target_path)
    originals = {bpathlib.make_absolute(Path(path)) for path in packer._actions}
    files: dict[str, Path] = {}

    def add(relpath: str, local: Path) -> None:
        if files.get(relpath, local) != local:
            raise PackError(f"two different files would both be packed as {relpath}: "
                            f"{files[relpath]} and {local}")
        files[relpath] = local

    for src, dst in packer.recorder.copies:
        add(Path(dst).relative_to(target).as_posix(), src)
    for src, dst in packer.recorder.moves:
        relpath = Path(dst).relative_to(target).as_posix()
        dest = workdir / relpath
        if bpathlib.make_absolute(dest) in originals:
            raise PackError(f"workdir {workdir} would overwrite the artist's file {dest}; "
                            "use a separate folder")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dest)
        except OSError:  # another file system than BAT's temporary folder
            shutil.copyfile(src, dest)
        add(relpath, dest)
    main = Path(packer.output_path).relative_to(target).as_posix()
    if main not in files:
        raise PackError(f"Blender Asset Tracer did not pack the main file {main}")
    return PackedScene(main=main, files=files, missing=sorted(packer.missing_references))

