# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Batch jobs of the web service: large uploads processed off the request.

A `Job` records one upload's progress; `JobStore` keeps the jobs of a running service
(in memory, results in a temporary directory: jobs do not survive a restart) and
forgets finished ones after their time to live.
"""
import dataclasses
import threading
import time
import uuid
from pathlib import Path

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


class JobStore:
    """The jobs of one service.

    Parameters
    ----------
    directory : str or path-like
        Where result files are written.
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
        return job

    def get(self, job_id):
        """The job of an id, or None (unknown or expired)."""
        with self._lock:
            self._expire()
            return self._jobs.get(job_id)

    def discard(self, job_id):
        """Forget a job (and delete its result)."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None and job.path is not None:
            job.path.unlink(missing_ok=True)

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
            if job.path is not None:
                job.path.unlink(missing_ok=True)
