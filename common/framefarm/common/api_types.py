"""The gateway API's JSON bodies as TypedDicts. Generated from openapi.yaml by
scripts/gen_api_types.py: do not edit; change the spec and run the script again."""
# No `from __future__ import annotations`: TypedDict reads NotRequired only from evaluated
# annotations, so every name is defined before it is used.
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict

__all__ = [
    "Sha256",
    "ErrorError",
    "Error",
    "Ok",
    "Readiness",
    "ManifestPath",
    "Manifest",
    "UploadId",
    "CommitRequest",
    "DirectUpload",
    "Upload",
    "FrameRange",
    "FinishKind",
    "FinishOptions",
    "Finish",
    "OutputNames",
    "WebhookUrl",
    "WebhookFormat",
    "Notify2",
    "Notify",
    "JobRequest",
    "WebhookSubscription",
    "EstimateSecondsPerFrame",
    "Estimate",
    "JobStatus",
    "JobFrames",
    "JobParts",
    "JobStill2",
    "JobPartListItem",
    "FinishState",
    "Job",
    "WorkerInfo",
    "Capability",
    "WorkerRequest",
    "Registration",
    "LeaseRef",
    "LeasePiece2",
    "PartSpan",
    "Lease",
    "NextLease",
    "JobIdText",
    "HeldJobs",
    "Outcome",
    "HealthReply",
    "ListGatewaysReplyGatewaysItem",
    "ListGatewaysReply",
    "FindMissingFilesRequest",
    "FindMissingFilesReply",
    "OpenUploadsRequest",
    "OpenUploadsReply",
    "ListJobsReply",
    "SetJobPriorityRequest",
    "ListPreviewsReply",
    "ListWorkersReply",
    "ClaimPartRequest",
    "ClaimPartReply",
    "HeartbeatRequest",
    "HeartbeatReply",
    "GetSceneReply",
    "GetInputsReplyInputsItem",
    "GetInputsReply",
    "UploadResultReply",
    "CommitResultReply",
    "OpenResultUploadRequest",
    "OpenResultUploadReply",
    "ReportFailureRequest",
    "ReleasePartRequest",
    "WebhookKeyReply",
    "ListWebhooksReply",
    "AddWebhookRequest",
    "GetPinnedBlenderReply",
]


Sha256: TypeAlias = str


class ErrorError(TypedDict):
    code: str
    message: str
    missing: NotRequired[list[Sha256]]


class Error(TypedDict):
    error: ErrorError


class Ok(TypedDict):
    ok: Literal[True]


class Readiness(TypedDict):
    ready: bool
    problems: NotRequired[dict[str, str]]


ManifestPath: TypeAlias = str


Manifest: TypeAlias = dict[str, Sha256]


UploadId: TypeAlias = str


class CommitRequest(TypedDict):
    id: UploadId


class DirectUpload(TypedDict):
    url: str
    id: UploadId


class Upload(TypedDict):
    sha256: Sha256
    stored: bool
    size: NotRequired[int]


class FrameRange(TypedDict):
    start: int
    end: int


FinishKind: TypeAlias = Literal['encode', 'merge']


class FinishOptions(TypedDict):
    """The kind's own options, handed to the worker that runs it. "encode": `video` is "scene" (the movie the scene's FFMPEG output settings ask for) or "preview" (an H.264 MP4 at the scene's frame rate)."""
    video: NotRequired[Literal['scene', 'preview']]


class Finish(TypedDict):
    kind: FinishKind
    keep_frames: NotRequired[bool]
    options: NotRequired[FinishOptions]


class OutputNames(TypedDict):
    pattern: str
    multilayer: NotRequired[bool]


WebhookUrl: TypeAlias = str


WebhookFormat: TypeAlias = Literal['json', 'slack', 'discord']


class Notify2(TypedDict):
    url: WebhookUrl
    format: NotRequired[WebhookFormat]


Notify: TypeAlias = WebhookUrl | Notify2


class JobRequest(TypedDict):
    manifest: Manifest
    main: str
    frames: str | FrameRange
    step: NotRequired[int]
    chunk: NotRequired[int | None]
    priority: NotRequired[int]
    name: NotRequired[str | None]
    max_frame_seconds: NotRequired[int | None]
    target_part_seconds: NotRequired[int | None]
    format: NotRequired[Literal['PNG', 'OPEN_EXR', 'OPEN_EXR_MULTILAYER', 'TIFF', 'JPEG', 'JP2', 'WEBP', 'BMP', 'TGA', 'RAWTGA', 'IRIS', 'HDR', 'CINEON', 'DPX', None]]
    finish: NotRequired[None | Finish]
    still: NotRequired[bool]
    denoise: NotRequired[bool]
    pieces: NotRequired[int | None]
    output: NotRequired[None | OutputNames]
    notify: NotRequired[None | Notify]
    order: NotRequired[Literal['preview', 'sequential']]
    estimate: NotRequired[bool]


class WebhookSubscription(TypedDict):
    id: str
    url: str
    format: WebhookFormat
    owner: str


class EstimateSecondsPerFrame(TypedDict):
    min: float
    mean: float
    max: float


class Estimate(TypedDict):
    samples: list[int]
    seconds_per_frame: EstimateSecondsPerFrame
    peak_rss_bytes: int | None
    workers: int
    frames_left: NotRequired[int]
    projected_seconds: float | None
    price_per_worker_hour: float | None
    currency: str | None
    cost: float | None


JobStatus: TypeAlias = Literal['queued', 'running', 'assembling', 'estimated', 'done', 'failed', 'cancelled', 'expired']


class JobFrames(TypedDict):
    start: int
    end: int
    step: int
    total: int
    done: int


class JobParts(TypedDict):
    total: int
    done: int
    chunk: int


class JobStill2(TypedDict):
    frame: int
    pieces: int
    pieces_done: int
    denoise: NotRequired[bool]


class JobPartListItem(TypedDict):
    index: int
    start: int
    count: int
    step: NotRequired[int]
    state: Literal['queued', 'leased', 'done', 'failed', 'cancelled']
    attempts: int
    error: str | None


class FinishState(TypedDict):
    kind: FinishKind
    keep_frames: bool
    options: NotRequired[dict[str, Any]]
    state: Literal['waiting', 'queued', 'leased', 'done', 'failed', 'cancelled']
    attempts: NotRequired[int]
    error: NotRequired[str | None]


class Job(TypedDict):
    id: str
    name: str
    status: JobStatus
    priority: int
    rev: int
    frames: JobFrames
    parts: JobParts
    blender_version: str
    created_at: int
    started_at: int | None
    finished_at: int | None
    error: str | None
    waiting_reason: str | None
    max_frame_seconds: NotRequired[int | None]
    format: NotRequired[str | None]
    output: NotRequired[None | OutputNames]
    paused: NotRequired[bool]
    finish: NotRequired[None | FinishState]
    still: NotRequired[None | JobStill2]
    seconds_per_frame: NotRequired[float | None]
    order: NotRequired[Literal['preview', 'sequential', None]]
    estimate: NotRequired[None | Estimate]
    peak_rss_bytes: NotRequired[int | None]
    target_part_seconds: NotRequired[int | None]
    download_url: NotRequired[str]
    movie_url: NotRequired[str]
    parts_next: NotRequired[int | None]
    part_list: NotRequired[list[JobPartListItem]]


class WorkerInfo(TypedDict):
    id: str
    name: str
    blender: str
    blender_version: str
    device: str
    devices: list[str]
    slots: int
    sandbox: str
    state: Literal['idle', 'rendering', 'drained']
    drained: bool
    parts: list[str]
    last_seen: int
    parts_done: int
    parts_failed: int
    kept_away_from: list[str]


Capability: TypeAlias = Literal['encode', 'merge', 'merge-denoise']


class WorkerRequest(TypedDict):
    name: NotRequired[str]
    blender_version: int | str
    blender: NotRequired[str]
    device: NotRequired[str]
    devices: NotRequired[list[str]]
    slots: NotRequired[int]
    sandbox: NotRequired[Literal['bwrap', 'off']]
    capabilities: NotRequired[list[Capability]]


class Registration(TypedDict):
    id: str
    heartbeat_s: float
    lease_s: float
    claim_wait_s: float


class LeaseRef(TypedDict):
    id: str
    token: str


class LeasePiece2(TypedDict):
    index: int
    of: int
    frame: int
    denoise: NotRequired[bool]


class PartSpan(TypedDict):
    """A part's frames, as one value: start, start+step, ... (count of them)."""
    index: int
    start: int
    count: int
    step: int


class Lease(TypedDict):
    id: str
    job: str
    index: int
    span: PartSpan
    frames: list[int]
    token: str
    worker: str
    deadline_ms: int
    attempts: int
    scene_hash: Sha256
    main: str
    blender_version: int
    max_frame_seconds: NotRequired[int | None]
    format: NotRequired[str | None]
    kind: NotRequired[str]
    finish: NotRequired[str | None]
    options: NotRequired[dict[str, Any] | None]
    piece: NotRequired[None | LeasePiece2]
    seconds_per_frame: NotRequired[float | None]
    frames_left: NotRequired[int]


NextLease: TypeAlias = Lease | None


JobIdText: TypeAlias = str


HeldJobs: TypeAlias = list[JobIdText]


class Outcome(TypedDict):
    outcome: Literal['requeued', 'failed', 'ended']


class HealthReply(TypedDict):
    ok: Literal[True]


class ListGatewaysReplyGatewaysItem(TypedDict):
    url: str
    last_seen: int


class ListGatewaysReply(TypedDict):
    gateways: list[ListGatewaysReplyGatewaysItem]


class FindMissingFilesRequest(TypedDict):
    hashes: list[Sha256]


class FindMissingFilesReply(TypedDict):
    missing: list[Sha256]


class OpenUploadsRequest(TypedDict):
    files: dict[str, int]


class OpenUploadsReply(TypedDict):
    direct: bool
    uploads: dict[str, DirectUpload]


class ListJobsReply(TypedDict):
    jobs: list[Job]


class SetJobPriorityRequest(TypedDict):
    priority: int


class ListPreviewsReply(TypedDict):
    frames: list[int]
    fps: float | None


class ListWorkersReply(TypedDict):
    workers: list[WorkerInfo]


class ClaimPartRequest(TypedDict):
    wait: NotRequired[float]
    held: NotRequired[HeldJobs]


class ClaimPartReply(TypedDict):
    part: Lease


class HeartbeatRequest(TypedDict):
    parts: NotRequired[list[LeaseRef]]


class HeartbeatReply(TypedDict):
    abandon: list[str]


class GetSceneReply(TypedDict):
    main: str
    files: Manifest
    urls: NotRequired[dict[str, str]]


class GetInputsReplyInputsItem(TypedDict):
    index: int
    span: PartSpan
    url: str | None


class GetInputsReply(TypedDict):
    inputs: list[GetInputsReplyInputsItem]


class UploadResultReply(TypedDict):
    ok: Literal[True]
    job_status: JobStatus
    next: NotRequired[NextLease]


class CommitResultReply(TypedDict):
    ok: Literal[True]
    job_status: JobStatus
    next: NotRequired[NextLease]


class OpenResultUploadRequest(TypedDict):
    size: int


class OpenResultUploadReply(TypedDict):
    url: str | None
    id: UploadId | None


class ReportFailureRequest(TypedDict):
    message: NotRequired[str]
    log_tail: NotRequired[str]
    deterministic: NotRequired[bool]


class ReleasePartRequest(TypedDict):
    reason: NotRequired[str]


class WebhookKeyReply(TypedDict):
    key: str
    algorithm: str


class ListWebhooksReply(TypedDict):
    webhooks: list[WebhookSubscription]


class AddWebhookRequest(TypedDict):
    url: WebhookUrl
    format: NotRequired[WebhookFormat]


class GetPinnedBlenderReply(TypedDict):
    version: str
    sha256: Sha256
    size: int
    filename: str
    url: str
