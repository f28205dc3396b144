from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Value(_message.Message):
    __slots__ = ("number", "integer", "text", "flag")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    number: float
    integer: int
    text: str
    flag: bool
    def __init__(self, number: _Optional[float] = ..., integer: _Optional[int] = ..., text: _Optional[str] = ..., flag: _Optional[bool] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("data", "crc32", "size", "ref")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    crc32: int
    size: int
    ref: str
    def __init__(self, data: _Optional[bytes] = ..., crc32: _Optional[int] = ..., size: _Optional[int] = ..., ref: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("worker_id", "slots", "token", "capabilities", "version", "threads", "running", "devices")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    slots: int
    token: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    version: str
    threads: int
    running: _containers.RepeatedScalarFieldContainer[int]
    devices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, worker_id: _Optional[str] = ..., slots: _Optional[int] = ..., token: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ..., threads: _Optional[int] = ..., running: _Optional[_Iterable[int]] = ..., devices: _Optional[_Iterable[str]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, job_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("job_id", "ok", "value", "metrics", "checkpoint", "error", "seconds", "threads")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    ok: bool
    value: float
    metrics: _containers.MessageMap[str, Value]
    checkpoint: Checkpoint
    error: str
    seconds: float
    threads: int
    def __init__(self, job_id: _Optional[int] = ..., ok: _Optional[bool] = ..., value: _Optional[float] = ..., metrics: _Optional[_Mapping[str, Value]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., error: _Optional[str] = ..., seconds: _Optional[float] = ..., threads: _Optional[int] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("job_id", "reason", "draining")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    reason: str
    draining: bool
    def __init__(self, job_id: _Optional[int] = ..., reason: _Optional[str] = ..., draining: _Optional[bool] = ...) -> None: ...

class ResultBatch(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Result]
    def __init__(self, results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ...) -> None: ...

class Capacity(_message.Message):
    __slots__ = ("slots",)
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    slots: int
    def __init__(self, slots: _Optional[int] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("step", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    step: float
    metrics: _containers.MessageMap[str, Value]
    def __init__(self, step: _Optional[float] = ..., metrics: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class JobReports(_message.Message):
    __slots__ = ("job_id", "reports")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    reports: _containers.RepeatedCompositeFieldContainer[Report]
    def __init__(self, job_id: _Optional[int] = ..., reports: _Optional[_Iterable[_Union[Report, _Mapping]]] = ...) -> None: ...

class ReportBatch(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobReports]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobReports, _Mapping]]] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "result", "release", "results", "capacity", "reports")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    result: Result
    release: Release
    results: ResultBatch
    capacity: Capacity
    reports: ReportBatch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., results: _Optional[_Union[ResultBatch, _Mapping]] = ..., capacity: _Optional[_Union[Capacity, _Mapping]] = ..., reports: _Optional[_Union[ReportBatch, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("study", "session", "heartbeat_s", "lease_s", "spec_toml", "metric", "max_checkpoint_bytes", "shared_checkpoints", "batches", "attached", "capacity", "recorded", "reports", "verdicts")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_S_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    SPEC_TOML_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MAX_CHECKPOINT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHARED_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    study: str
    session: str
    heartbeat_s: float
    lease_s: float
    spec_toml: str
    metric: str
    max_checkpoint_bytes: int
    shared_checkpoints: bool
    batches: bool
    attached: _containers.RepeatedScalarFieldContainer[int]
    capacity: bool
    recorded: bool
    reports: bool
    verdicts: bool
    def __init__(self, study: _Optional[str] = ..., session: _Optional[str] = ..., heartbeat_s: _Optional[float] = ..., lease_s: _Optional[float] = ..., spec_toml: _Optional[str] = ..., metric: _Optional[str] = ..., max_checkpoint_bytes: _Optional[int] = ..., shared_checkpoints: _Optional[bool] = ..., batches: _Optional[bool] = ..., attached: _Optional[_Iterable[int]] = ..., capacity: _Optional[bool] = ..., recorded: _Optional[bool] = ..., reports: _Optional[bool] = ..., verdicts: _Optional[bool] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("job_id", "trial", "rung", "bracket", "start", "stop", "config", "checkpoint", "attempt")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    RUNG_FIELD_NUMBER: _ClassVar[int]
    BRACKET_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    trial: int
    rung: int
    bracket: int
    start: float
    stop: float
    config: _containers.MessageMap[str, Value]
    checkpoint: Checkpoint
    attempt: int
    def __init__(self, job_id: _Optional[int] = ..., trial: _Optional[int] = ..., rung: _Optional[int] = ..., bracket: _Optional[int] = ..., start: _Optional[float] = ..., stop: _Optional[float] = ..., config: _Optional[_Mapping[str, Value]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., attempt: _Optional[int] = ...) -> None: ...

class AssignmentBatch(_message.Message):
    __slots__ = ("assignments", "recorded")
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    recorded: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., recorded: _Optional[_Iterable[int]] = ...) -> None: ...

class Recorded(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, job_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("job_id", "stop", "reports")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    stop: bool
    reports: int
    def __init__(self, job_id: _Optional[int] = ..., stop: _Optional[bool] = ..., reports: _Optional[int] = ...) -> None: ...

class Verdicts(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ...) -> None: ...

class SchedulerMessage(_message.Message):
    __slots__ = ("welcome", "assignment", "finished", "assignments", "recorded", "verdicts")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assignment: Assignment
    finished: Finished
    assignments: AssignmentBatch
    recorded: Recorded
    verdicts: Verdicts
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., finished: _Optional[_Union[Finished, _Mapping]] = ..., assignments: _Optional[_Union[AssignmentBatch, _Mapping]] = ..., recorded: _Optional[_Union[Recorded, _Mapping]] = ..., verdicts: _Optional[_Union[Verdicts, _Mapping]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("token", "results")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    token: str
    results: bool
    def __init__(self, token: _Optional[str] = ..., results: _Optional[bool] = ...) -> None: ...

class RungStatus(_message.Message):
    __slots__ = ("bracket", "rung", "resource", "results")
    BRACKET_FIELD_NUMBER: _ClassVar[int]
    RUNG_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    bracket: int
    rung: int
    resource: float
    results: int
    def __init__(self, bracket: _Optional[int] = ..., rung: _Optional[int] = ..., resource: _Optional[float] = ..., results: _Optional[int] = ...) -> None: ...

class BestResult(_message.Message):
    __slots__ = ("trial", "value", "resource", "rung", "config")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    RUNG_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    trial: int
    value: float
    resource: float
    rung: int
    config: _containers.MessageMap[str, Value]
    def __init__(self, trial: _Optional[int] = ..., value: _Optional[float] = ..., resource: _Optional[float] = ..., rung: _Optional[int] = ..., config: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class StudyStatus(_message.Message):
    __slots__ = ("study", "algorithm", "metric", "mode", "trials", "max_trials", "results", "failed", "running", "workers", "elapsed_s", "finished", "rungs", "best", "time_limit_s", "error", "worker_info", "reports", "latest", "results_json")
    STUDY_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    RUNGS_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKER_INFO_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    RESULTS_JSON_FIELD_NUMBER: _ClassVar[int]
    study: str
    algorithm: str
    metric: str
    mode: str
    trials: int
    max_trials: int
    results: int
    failed: int
    running: int
    workers: int
    elapsed_s: float
    finished: bool
    rungs: _containers.RepeatedCompositeFieldContainer[RungStatus]
    best: BestResult
    time_limit_s: float
    error: str
    worker_info: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    reports: int
    latest: LatestReport
    results_json: str
    def __init__(self, study: _Optional[str] = ..., algorithm: _Optional[str] = ..., metric: _Optional[str] = ..., mode: _Optional[str] = ..., trials: _Optional[int] = ..., max_trials: _Optional[int] = ..., results: _Optional[int] = ..., failed: _Optional[int] = ..., running: _Optional[int] = ..., workers: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., finished: _Optional[bool] = ..., rungs: _Optional[_Iterable[_Union[RungStatus, _Mapping]]] = ..., best: _Optional[_Union[BestResult, _Mapping]] = ..., time_limit_s: _Optional[float] = ..., error: _Optional[str] = ..., worker_info: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ..., reports: _Optional[int] = ..., latest: _Optional[_Union[LatestReport, _Mapping]] = ..., results_json: _Optional[str] = ...) -> None: ...

class LatestReport(_message.Message):
    __slots__ = ("trial", "rung", "step", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    RUNG_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    trial: int
    rung: int
    step: float
    metrics: _containers.MessageMap[str, Value]
    def __init__(self, trial: _Optional[int] = ..., rung: _Optional[int] = ..., step: _Optional[float] = ..., metrics: _Optional[_Mapping[str, Value]] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("id", "slots", "devices")
    ID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    id: str
    slots: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., slots: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("token", "detail", "batch")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    token: str
    detail: bool
    batch: bool
    def __init__(self, token: _Optional[str] = ..., detail: _Optional[bool] = ..., batch: _Optional[bool] = ...) -> None: ...

class StudyEvent(_message.Message):
    __slots__ = ("json", "events")
    JSON_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    json: str
    events: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, json: _Optional[str] = ..., events: _Optional[_Iterable[str]] = ...) -> None: ...
