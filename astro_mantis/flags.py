"""Quality flags attached to cutouts and, later, to redshift rows.

`MantisFlag` is an `enum.IntFlag`: flags combine with ``|`` and are stored as
plain integers in tables (``z_flags``) and FITS headers (``FLAGS``).

=========================  =====  ==========================================================
flag                       value  meaning
=========================  =====  ==========================================================
``GALEX_MISSING``              1  no usable GALEX image for this position
``PANSTARRS_MISSING``          2  no usable Pan-STARRS image for this position
``UNWISE_MISSING``             4  no usable unWISE image for this position
``BAD_COORDINATE``             8  the position is NaN, masked or out of range; nothing fetched
``FETCH_FAILED``              16  a request kept failing after all retries
``OUT_OF_FOOTPRINT``          32  a survey does not cover the position
``NAN_PIXELS``                64  some pixels are NaN (chip gaps, edges); see ``.mask``
``DUST_UNKNOWN``             128  Milky Way dust values unavailable (photo-z stage)
``OUT_OF_DISTRIBUTION``      256  input unlike the training data (photo-z stage)
``NOT_ESTIMATED``            512  no redshift estimate for this row: its values are masked
                                  (bad coordinate, a failed fetch, or no survey data at all)
=========================  =====  ==========================================================
"""
import enum

__all__ = ["MantisFlag", "survey_missing_flag"]


class MantisFlag(enum.IntFlag):
    """Bit flags describing what went wrong (or not) for one position."""

    NONE = 0
    GALEX_MISSING = 1
    PANSTARRS_MISSING = 2
    UNWISE_MISSING = 4
    BAD_COORDINATE = 8
    FETCH_FAILED = 16
    OUT_OF_FOOTPRINT = 32
    NAN_PIXELS = 64
    DUST_UNKNOWN = 128
    OUT_OF_DISTRIBUTION = 256
    NOT_ESTIMATED = 512


def survey_missing_flag(survey_name):
    """Return the ``<SURVEY>_MISSING`` flag of a survey, or `MantisFlag.NONE` if none exists."""
    return MantisFlag.__members__.get(f"{survey_name.upper()}_MISSING", MantisFlag.NONE)
