"""Still jobs: one frame split into pieces that several workers render, merged on a worker.

A still job (`"still": true` in the request, openapi.yaml) renders one frame as `pieces`
ordinary parts: part i is piece i, a band of the frame's rows (worker/still_piece.py
says how, docs/stills.md why bands). Each part's span is that one frame, so leases,
retries, fencing, blocklists, cancel and the result's frame check work for pieces
unchanged; the claim answer's `piece` tells the worker which band to render, and the
piece's result must be that frame as OpenEXR (float, for the merge). The job's finishing
task (finishing.py) is "merge": a worker joins the bands and writes the frame once, in the
scene's format; the final zip holds only that image, as a local render would give.

A still of a scene that denoises (`"denoise": true`, which the client reads from the scene)
is merged only by a worker advertising "merge-denoise": its Blender has OpenImageDenoise and
denoises the joined frame once. Where no live worker that can open the scene advertises it,
the job is refused at submit (409 no_denoiser) rather than rendering pieces nobody can merge.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import Any

from framefarm.common import frameset

from . import finishing, keys
from .errors import ApiError, bad_request
from .farm import Farm

# The most pieces one still may have (openapi.yaml's JobRequest.pieces says the same): each
# piece costs a worker a scene load, and past a few dozen the bands are thin slivers.
MAX_PIECES = 64
MERGE = "merge"
MERGE_DENOISE = "merge-denoise"  # the capability of a worker whose merge denoises (openapi.yaml's Capability)
# The piece's format (worker/still_piece.py): OpenEXR, whose files start with this magic number.
PIECE_EXTENSION = ".exr"
EXR_MAGIC = b"\x76\x2f\x31\x01"


@dataclass(frozen=True)
class Still:
    """A still job's request: its frame, split into `pieces` (None: one per capable live worker),
    denoised after the merge when `denoise`."""

    frame: int
    pieces: int | None
    denoise: bool = False

    @classmethod
    def from_body(cls, body: dict[str, Any], frames: frameset.FrameRange) -> "Still | None":
        """The still of a request the spec accepted; 400 for what a schema cannot say."""
        if not body.get("still"):
            if body.get("pieces") is not None:
                raise bad_request("pieces splits a still: send it with \"still\": true", "bad_pieces")
            if (body.get("finish") or {}).get("kind") == MERGE:
                raise bad_request("merge is the finishing task of a split still: submit with \"still\": true "
                                  "instead of asking for it", "bad_finish")
            if body.get("denoise"):
                raise bad_request("denoise is for a split still (its merge denoises the joined frame): send it "
                                  "with \"still\": true; other jobs denoise as their scene says", "bad_still")
            return None
        if frames.count != 1:
            raise bad_request(f"a still is one frame; frames names {frames.count} ({frames.text()}): send a single "
                              "frame such as \"12\"", "bad_frames")
        if body.get("finish"):
            raise bad_request("a still's finishing task is its merge: send no finish with \"still\": true",
                              "bad_finish")
        if body.get("chunk") is not None:
            raise bad_request("a still is split into pieces, not chunks: send pieces, not chunk", "bad_still")
        return cls(frames.start, body.get("pieces"), bool(body.get("denoise")))

    def check_mergers(self, capable_workers: list[dict[str, str]]) -> None:
        """409 no_denoiser, before anything renders, for a denoised still that no live worker able
        to open its scene could merge (workers.capable's list: those that can open it)."""
        if self.denoise and not any(MERGE_DENOISE in finishing.can_do(w) for w in capable_workers):
            raise ApiError(409, "no_denoiser", "the scene denoises, and no live worker of this farm that can open "
                           "it can denoise a merged still (none advertises merge-denoise: its Blender needs "
                           "OpenImageDenoise, e.g. the bpy 5.0 back end; Debian's Blender 3.4 has none): start "
                           "such a worker, turn Denoise off in the scene, or render the frame as a one-frame job "
                           "(--frames F) on a worker that denoises")

    def count(self, capable_workers: int) -> int:
        """The pieces: as asked, else one per worker that can render it (one at least)."""
        return self.pieces if self.pieces is not None else max(1, min(MAX_PIECES, capable_workers))

    def spans(self, pieces: int) -> list[frameset.PartSpan]:
        """Part i renders piece i of the frame: every span is that one frame."""
        return [frameset.PartSpan(index, self.frame, 1, 1) for index in range(pieces)]

    def finish(self, pieces: int, output_format: str | None) -> finishing.Finish:
        """The merge, whose result alone is the job's: the pieces are of no use to anyone else.
        It writes the frame in the job's `format` (Blender's -F) where one was asked for."""
        options: dict[str, Any] = {"pieces": pieces}
        if output_format:
            options["format"] = output_format
        if self.denoise:
            options["denoise"] = True
        return finishing.Finish(MERGE, keep_frames=False, options=options,
                                needs=MERGE_DENOISE if self.denoise else None)


# The job field that marks a split still (its number of pieces); results.py reads it in its
# lease check's round trip.
PIECES_FIELD = "still_pieces"


def pieces_of(job: dict[str, str]) -> int | None:
    """A still job's number of pieces; None for any other job."""
    return int(job[PIECES_FIELD]) if job.get(PIECES_FIELD) else None


def is_piece(kind: str, still_pieces: str | None) -> bool:
    """Whether a part of kind `kind`, of a job whose PIECES_FIELD is `still_pieces`, is a still's
    piece (its merge is not)."""
    return kind == finishing.RENDER and bool(still_pieces)


def denoises(job: dict[str, str]) -> bool:
    """Whether a still job's merge denoises the joined frame."""
    return job.get("finish_needs") == MERGE_DENOISE


def claim_piece(job: dict[str, str], index: int) -> dict[str, Any] | None:
    """The claim answer's `piece` for part `index` of `job`: which band of which frame, and
    whether to render the denoising passes; None for the parts of other jobs and for the merge."""
    pieces = pieces_of(job)
    if pieces is None or index >= pieces:
        return None
    piece: dict[str, Any] = {"index": index, "of": pieces, "frame": int(job["start"])}
    if denoises(job):
        piece["denoise"] = True
    return piece


def view(job: dict[str, str]) -> dict[str, Any] | None:
    """The job view's `still`: its frame, its pieces and how many are rendered, and whether it denoises."""
    pieces = pieces_of(job)
    if pieces is None:
        return None
    out: dict[str, Any] = {"frame": int(job["start"]), "pieces": pieces,
                           "pieces_done": min(pieces, int(job.get("parts_done", 0)))}
    if denoises(job):
        out["denoise"] = True
    return out


def check_piece(zf: zipfile.ZipFile, frame_infos: list[zipfile.ZipInfo]) -> None:
    """A piece's result holds its frame (the frame check has seen to that) as OpenEXR: a PNG
    or anything else would be merged as noise, or not at all."""
    for info in frame_infos:
        if not info.filename.lower().endswith(PIECE_EXTENSION):
            raise bad_request(f"{info.filename} is not OpenEXR: a still's piece is rendered as {PIECE_EXTENSION} "
                              "(float, for the merge)", "bad_result")
        with zf.open(info) as fh:
            if fh.read(len(EXR_MAGIC)) != EXR_MAGIC:
                raise bad_request(f"{info.filename} is not an OpenEXR file", "bad_result")
