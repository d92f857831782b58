# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""`WebSettings`: everything ``astro-mantis serve`` can be told, in one object."""
import dataclasses
import json
import math
import os

__all__ = ["WebSettings", "SETTINGS_ENV"]

#: Environment variable through which ``astro-mantis serve --workers N`` hands the
#: settings (JSON) to its worker processes.
SETTINGS_ENV = "ASTRO_MANTIS_WEB_SETTINGS"


@dataclasses.dataclass
class WebSettings:
    """Settings of the web service (`astro_mantis.web.app.create_app`).

    Attributes
    ----------
    model : str
        Registry name of the model, loaded once when the service starts
        (`astro_mantis.models.load_model`) and shared by every request.
    weights : str, optional
        Weights file for the model (default: the registry's).
    device : str, optional
        Torch device (default ``"cpu"``).
    rate_limit : float
        Requests per second allowed to one client (IP address) on the API endpoints;
        10 as in the reference web app; 0 turns the limit off.
    rate_burst : int, optional
        Requests a client may send at once before the rate applies
        (default ``max(1, ceil(2 * rate_limit))``).
    concurrency : int
        Threads running photo-z and cutout work.
    queue_size : int
        Requests waiting for a thread at most; beyond it the answer is 503 with
        ``Retry-After``.
    max_batch : int
        Single-position requests that wait together are run as one table of at most
        this many rows (one cutout fetch, one network pass).
    job_workers, max_jobs : int
        Threads running batch jobs, and batch jobs waiting at most (beyond: 503).
    sync_rows : int
        Uploaded tables of at most this many rows are answered on the request;
        larger ones become a job with a status URL.
    max_rows : int
        Most rows of an uploaded table (more: 413).
    max_upload_bytes : int
        Largest request body in bytes (more: 413).
    job_ttl : float
        Seconds a finished job's result is kept.
    jobs_dir : str, optional
        Directory of the batch jobs' states and results (default: a temporary
        directory of the process). Worker processes given the same one answer for
        each other's jobs; ``astro-mantis serve --workers N`` makes one for them.
    shutdown_timeout : float
        Seconds given to queued and running work to finish at shutdown; work still
        waiting then is failed with a 503 answer.
    demo : bool
        Serve the bundled sample sky through loopback survey servers (set by
        ``astro-mantis serve --demo``, which starts them); dust values come from the
        sample's catalog and the page offers sample galaxies.
    panstarrs_url, legacysurvey_url, cache_dir : str, optional
        Override ``astro_mantis.conf`` for the life of the service.
    south_limit : float
        Declination (deg) below which Pan-STARRS has no data; the page refuses such
        positions, as the reference form does.
    allowed_hosts : list of str, optional
        Host names the service answers to (``Host`` header; others get 400), a
        defence against DNS rebinding; ``astro-mantis serve`` sets ``["127.0.0.1",
        "localhost"]`` when it listens on loopback. None: any.
    log_level : str
        Level of the ``astro_mantis`` logger in the service (default ``"WARNING"``: the
        library's per-call INFO summaries would otherwise be logged for every request).
    """

    model: str = "mantis-mini"
    weights: str = None
    device: str = "cpu"
    rate_limit: float = 10.0
    rate_burst: int = None
    concurrency: int = 2
    queue_size: int = 32
    max_batch: int = 32
    job_workers: int = 1
    max_jobs: int = 4
    sync_rows: int = 100
    max_rows: int = 100_000
    max_upload_bytes: int = 20 * 1024 * 1024
    job_ttl: float = 3600.0
    jobs_dir: str = None
    shutdown_timeout: float = 30.0
    demo: bool = False
    panstarrs_url: str = None
    legacysurvey_url: str = None
    cache_dir: str = None
    south_limit: float = -30.0
    log_level: str = "WARNING"
    allowed_hosts: list = None

    def __post_init__(self):
        self.check()

    def check(self):
        """Refuse settings that cannot work, naming the setting.

        Raises
        ------
        ValueError
            For a negative or zero count, a non-finite rate, or ``sync_rows`` above
            ``max_rows``.
        """
        for name in ("concurrency", "max_batch", "job_workers", "sync_rows", "max_rows",
                     "max_upload_bytes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        for name in ("queue_size", "max_jobs"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be 0 or more; got {getattr(self, name)}")
        for name in ("rate_limit", "job_ttl", "shutdown_timeout"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {value}")
        if self.rate_burst is not None and int(self.rate_burst) < 1:
            raise ValueError(f"rate_burst must be at least 1; got {self.rate_burst}")
        if int(self.sync_rows) > int(self.max_rows):
            raise ValueError(f"sync_rows ({self.sync_rows}) cannot exceed max_rows "
                             f"({self.max_rows})")

    def to_json(self):
        """The settings as a JSON string (see `from_json`)."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        """Settings from `to_json` output.

        Parameters
        ----------
        text : str

        Returns
        -------
        `WebSettings`

        Raises
        ------
        ValueError
            For text that is not a JSON object of known settings.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"web settings are not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("web settings must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown web settings: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_environment(cls):
        """Settings from the ``ASTRO_MANTIS_WEB_SETTINGS`` environment variable.

        Returns
        -------
        `WebSettings`
            The defaults when the variable is not set.
        """
        text = os.environ.get(SETTINGS_ENV)
        return cls() if not text else cls.from_json(text)
