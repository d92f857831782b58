"""Exceptions raised by astro_mantis."""

__all__ = ["MantisError", "InvalidResponseError", "FetchError"]


class MantisError(Exception):
    """Base class of astro_mantis errors."""


class InvalidResponseError(MantisError):
    """A service answered, but not with what its protocol promises.

    Examples: an HTML page with status 200, an empty or truncated FITS file, an
    image of the wrong shape.
    """


class FetchError(MantisError):
    """A request still failed after all retries."""
