# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Batch jobs of the web service: large uploads processed off the request.

A `Job` records one upload's progress; `JobStore` keeps the jobs of a running service
and forgets finished ones after their time to live. Each job's state is also written,
atomically, as ``<id>.json`` in the store's directory, beside its result
``<id>.result.<suffix>`` (``JobStore.result_path``; a JSON result must not take the
state's name), so that the worker processes of one service (``astro-mantis serve
--workers N``), given one directory, answer for each other's jobs. Jobs do not survive
a restart: the command makes the directory a temporary one.
"""
import dataclasses
import json
import threading
import time
import uuid
from pathlib import Path

from ..atomic import atomic_open

__all__ = ["Job", "JobStore", "JOB_STATES"]

#: The states a job goes through (``failed`` includes jobs cut short by a shutdown).
JOB_STATES = ("queued", "running", "done", "failed")


@dataclasses.dataclass
class Job:
    """One batch job.

    Attributes
    ----------
    id : str
        32 hexadecimal digits (random, so not guessable).
    n_rows : int
        Rows of the uploaded table.
    format : str
        Output format.
    filename : str
        Name offered for the result file.
    status : str
        One of `JOB_STATES`.
    rows_done : int
        Rows processed so far.
    error : str, optional
        Why the job failed.
    created, started, finished : float, optional
        Unix times.
    path : `pathlib.Path`, optional
        The result file once done.
    """

    id: str
    n_rows: int
    format: str
    filename: str
    status: str = "queued"
    rows_done: int = 0
    error: str = None
    created: float = dataclasses.field(default_factory=time.time)
    started: float = None
    finished: float = None
    path: Path = None

    def as_dict(self):
        """The job's public status (the ``GET /jobs/{id}`` answer)."""
        out = {"job_id": self.id, "status": self.status, "n_rows": self.n_rows,
               "rows_done": self.rows_done, "format": self.format, "error": self.error,
               "created": self.created, "started": self.started, "finished": self.finished,
               "status_url": f"/jobs/{self.id}",
               "result_url": f"/jobs/{self.id}/result" if self.status == "done" else None}
        return out

    def to_json(self):
        """The job's full state as JSON (read back by `from_json`)."""
        data = dataclasses.asdict(self)
        data["path"] = None if self.path is None else str(self.path)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text):
        """A job from `to_json` output."""
        data = json.loads(text)
        data["path"] = None if data.get("path") is None else Path(data["path"])
        return cls(**data)


class JobStore:
    """The jobs of one service.

    Parameters
    ----------
    directory : str or path-like
        Where the jobs' states (``<id>.json``) and result files
        (``<id>.result.<suffix>``, ``result_path``) are written. Stores of
        several processes given the same directory see each other's jobs (`get`); each
        runs, updates and fails only its own.
    ttl : float
        Seconds a finished job (and its result) is kept.
    max_jobs : int
        Most jobs remembered; beyond it the oldest finished ones are forgotten first.
    """

    def __init__(self, directory, ttl=3600.0, max_jobs=256):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ttl = float(ttl)
        self.max_jobs = int(max_jobs)
        self._jobs = {}
        self._lock = threading.Lock()

    def create(self, n_rows, format, filename):
        """A new queued job.

        Parameters
        ----------
        n_rows : int
        format : str
        filename : str

        Returns
        -------
        `Job`
        """
        job = Job(id=uuid.uuid4().hex, n_rows=int(n_rows), format=format, filename=filename)
        with self._lock:
            self._expire()
            self._jobs[job.id] = job
            self._save(job)
        return job

    def result_path(self, job_id, suffix):
        """Where a job's result file goes: ``<id>.result<suffix>`` in the directory.

        Parameters
        ----------
        job_id : str
        suffix : str
            The format's file suffix (``".ecsv"``, ``".json"`` ...).

        Returns
        -------
        `pathlib.Path`
            Never the job's state file, whatever the suffix.
        """
        return self.directory / f"{job_id}.result{suffix}"

    def update(self, job, **changes):
        """Change fields of one of this store's jobs and record its new state.

        Parameters
        ----------
        job : `Job`
        **changes
            Field values (``status``, ``rows_done``, ``path``, ...).
        """
        with self._lock:
            for name, value in changes.items():
                setattr(job, name, value)
            self._save(job)

    def get(self, job_id):
        """The job of an id, or None (unknown or expired).

        A job of this store is returned as it is; one of another process's store on the
        same directory is read from its recorded state (a snapshot).
        """
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        try:
            job = Job.from_json(self._state_path(job_id).read_text())
        except (OSError, ValueError, TypeError):
            return None  # unknown, expired, or not a job's state
        if job.finished is not None and time.time() - job.finished > self.ttl:
            self._delete(job)
            return None
        return job

    def discard(self, job_id):
        """Forget a job (and delete its result)."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None:
            self._delete(job)

    def counts(self):
        """Jobs per state.

        Returns
        -------
        dict
        """
        with self._lock:
            out = {s: 0 for s in JOB_STATES}
            for job in self._jobs.values():
                out[job.status] += 1
            return out

    def fail_unfinished(self, reason):
        """Mark every queued or running job failed (at shutdown)."""
        with self._lock:
            for job in self._jobs.values():
                if job.status in ("queued", "running"):
                    job.status, job.error, job.finished = "failed", reason, time.time()
                    self._save(job)

    def _state_path(self, job_id):
        return self.directory / f"{job_id}.json"

    def _save(self, job):
        with atomic_open(self._state_path(job.id), "w", fsync=False) as f:
            f.write(job.to_json())

    def _delete(self, job):
        self._state_path(job.id).unlink(missing_ok=True)
        if job.path is not None:
            job.path.unlink(missing_ok=True)

    def _expire(self):
        now = time.time()
        finished = sorted((j for j in self._jobs.values() if j.finished is not None),
                          key=lambda j: j.finished)
        drop = [j for j in finished if now - j.finished > self.ttl]
        excess = len(self._jobs) - len(drop) - self.max_jobs
        if excess > 0:
            drop += [j for j in finished if j not in drop][:excess]
        for job in drop:
            del self._jobs[job.id]
            self._delete(job)
