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
``EXPTIME_UNKNOWN``         1024  a Pan-STARRS stack's exposure time is unknown, for a model
                                  that takes exposure-normalised counts (photo-z stage)
``BAND_MISSING``            2048  a survey delivered some of its bands only: the others are
                                  all zero (GALEX NUV without FUV), as the service sends
                                  them and the model gets them
=========================  =====  ==========================================================

Each survey's ``<SURVEY>_MISSING`` bit is declared by its module in
`astro_mantis.surveys` (``missing_flag``): the three built-in surveys declare the
members above, whose names and values stay as they are. A survey added beyond them
(a module in ``surveys/`` or `~astro_mantis.surveys.register_survey`) declares a bit
of `SURVEY_FLAG_BITS` or, declaring none, is given the lowest free one when it joins
the registry; `survey_missing_flag` answers from that record, so adding a survey
needs no change here.
"""
import enum
import operator

__all__ = ["MantisFlag", "survey_missing_flag", "register_survey_flag",
           "unregister_survey_flag", "survey_flags", "SURVEY_FLAG_BITS"]


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
    EXPTIME_UNKNOWN = 1024
    BAND_MISSING = 2048

    @classmethod
    def _missing_(cls, value):
        # A ``z_flags`` value read from a table is a numpy integer (``np.int32``), which
        # is not an ``int``: take any integer (``operator.index``), then let `enum.Flag`
        # make the combination of members (its pseudo-member) as for a Python int.
        if not isinstance(value, int):
            try:
                value = operator.index(value)
            except TypeError:
                return None  # not an integer: "... is not a valid MantisFlag"
            return cls(value)
        return super()._missing_(value)


#: The bits (positions) given to the missing flags of surveys beyond the built-in three:
#: above every `MantisFlag` member, and below bit 31 because ``z_flags`` columns are int32.
SURVEY_FLAG_BITS = range(16, 31)

# survey name -> its <SURVEY>_MISSING flag, recorded by the survey registry
_SURVEY_FLAGS = {}


def _builtin_missing_flag(name):
    return MantisFlag.__members__.get(f"{name.upper()}_MISSING", MantisFlag.NONE)


def survey_missing_flag(survey_name):
    """Return the ``<SURVEY>_MISSING`` flag of a survey.

    Parameters
    ----------
    survey_name : str
        Survey name, e.g. ``"galex"`` (case-insensitive).

    Returns
    -------
    `MantisFlag`
        The flag recorded for the survey when it joined the registry
        (`register_survey_flag`); for a built-in survey its member
        (``GALEX_MISSING``, ``PANSTARRS_MISSING``, ``UNWISE_MISSING``) even before the
        registry is loaded; `MantisFlag.NONE` for a name no survey has.

    Examples
    --------
    >>> survey_missing_flag("panstarrs")
    <MantisFlag.PANSTARRS_MISSING: 2>
    """
    name = str(survey_name).lower()
    if name in _SURVEY_FLAGS:
        return _SURVEY_FLAGS[name]
    return _builtin_missing_flag(name)


def register_survey_flag(survey_name, flag=None):
    """Record the ``<SURVEY>_MISSING`` flag of a survey joining the registry.

    Called by `astro_mantis.surveys` for every survey module it finds and by
    `~astro_mantis.surveys.register_survey`; users do not call it.

    Parameters
    ----------
    survey_name : str
        Survey name (case-insensitive).
    flag : int or `MantisFlag`, optional
        The bit the survey's module declares (``missing_flag``). A built-in survey
        declares its member; another survey a single bit of `SURVEY_FLAG_BITS`.
        None: the survey keeps the flag it has, a built-in one its member, any
        other the lowest free bit of `SURVEY_FLAG_BITS`.

    Returns
    -------
    `MantisFlag`
        The survey's flag.

    Raises
    ------
    ValueError
        If ``flag`` is not a single bit, is a member of `MantisFlag` that is not this
        survey's own, is outside `SURVEY_FLAG_BITS`, or another survey holds it; or
        no free bit is left.
    """
    name = str(survey_name).lower()
    builtin = _builtin_missing_flag(name)
    taken = {int(f): other for other, f in _SURVEY_FLAGS.items() if other != name}
    if flag is None:
        if name in _SURVEY_FLAGS:
            return _SURVEY_FLAGS[name]
        if builtin:
            flag = builtin
        else:
            free = [b for b in SURVEY_FLAG_BITS if (1 << b) not in taken]
            if not free:
                raise ValueError(f"no free missing-flag bit left for survey {name!r}: "
                                 f"{len(taken)} surveys hold one")
            flag = 1 << free[0]
    value = int(flag)
    if value <= 0 or value & (value - 1):
        raise ValueError(f"survey {name!r}: a missing flag is one bit, got {value}")
    if value in taken:
        raise ValueError(f"survey {name!r}: missing-flag bit {value} is held by survey "
                         f"{taken[value]!r}")
    member = next((m for m in MantisFlag if int(m) == value), None)
    if member is not None and member != builtin:
        raise ValueError(f"survey {name!r}: missing-flag bit {value} is MantisFlag."
                         f"{member.name}; use a bit of SURVEY_FLAG_BITS (2**16 to 2**30)")
    if member is None and value.bit_length() - 1 not in SURVEY_FLAG_BITS:
        raise ValueError(f"survey {name!r}: missing-flag bit {value} lies outside "
                         "SURVEY_FLAG_BITS (2**16 to 2**30)")
    _SURVEY_FLAGS[name] = MantisFlag(value)
    return _SURVEY_FLAGS[name]


def unregister_survey_flag(survey_name):
    """Forget the flag of a survey leaving the registry (its bit becomes free).

    Parameters
    ----------
    survey_name : str
        Survey name (case-insensitive); unknown names are ignored.
    """
    _SURVEY_FLAGS.pop(str(survey_name).lower(), None)


def survey_flags():
    """The ``<SURVEY>_MISSING`` flag of every registered survey.

    Returns
    -------
    dict
        ``"<SURVEY>_MISSING"`` name → `MantisFlag`, in bit order; the built-in
        surveys' entries are their members.

    Examples
    --------
    >>> import astro_mantis.surveys
    >>> survey_flags()["UNWISE_MISSING"]
    <MantisFlag.UNWISE_MISSING: 4>
    """
    items = sorted(_SURVEY_FLAGS.items(), key=lambda item: int(item[1]))
    return {f"{name.upper()}_MISSING": flag for name, flag in items}
