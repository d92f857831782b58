# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""One parser of sky positions: table columns, `~astropy.coordinates.SkyCoord`, names.

Everything that takes positions from a user (`~astro_mantis.add_redshift_columns`,
`Mantis.get_cutouts <astro_mantis.MantisClass.get_cutouts>`, the ``astro-mantis``
command, spectroscopic matching) reads them here, into ICRS degrees plus a per-row
validity and the reason a row is invalid. Invalid rows are never dropped: they keep
their place and are flagged ``BAD_COORDINATE`` downstream.

A position is valid when both values are finite, right ascension lies in
``0 <= ra <= 360`` degrees and declination in ``-90 <= dec <= 90`` degrees. Values
outside those ranges (``ra=400``, ``ra=-10``) are treated as typos and flagged, not
wrapped. (A `~astropy.coordinates.SkyCoord` wraps right ascension itself when it is
built, so its positions are always in range.)

Columns may hold

* numbers: degrees, unless the column carries an angular unit (``u.rad``,
  ``u.hourangle`` ...);
* strings: decimal degrees (``"185.0242"``) or sexagesimal (``"12:20:05.8"``,
  ``"12h20m05.8s"``, ``"+47:11:43"``, ``"47d11m43s"``). Sexagesimal right ascension
  is read in **hours** (the astronomical convention) unless the column carries a
  unit or ``ra_unit`` says otherwise; declination is read in degrees.

A column's unit is read as astropy reads it, and where astropy does not recognise it
(catalogues write ``TUNIT = 'degree'``, ``'DEGREES'``, ``'hours'`` ...) the common
spellings of degrees, hours, radians, arcminutes and arcseconds, in any case and
singular or plural, and astropy's generic unit names are understood too
(`angle_unit`); an hour of time (``'h'``) on a position column is an hour of right
ascension. A unit that is still not recognised is an error that says so and asks for
``ra_unit``/``dec_unit`` (``astro-mantis --ra-unit``), which then replace it.
"""
import re
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import (Angle, SkyCoord, SphericalRepresentation,
                                 UnitSphericalRepresentation)

__all__ = ["Positions", "angle_degrees", "angle_unit", "check_degrees", "column_degrees",
           "table_positions", "coordinate_positions", "icrs_positions", "resolve_name",
           "missing_column_error"]

_SEXAGESIMAL = re.compile(r"[:hdms\u00b0'\" ]")


@dataclass
class Positions:
    """Positions in ICRS degrees with a validity mask and a reason per invalid row.

    Attributes
    ----------
    ra, dec : `numpy.ndarray`
        Degrees; NaN where the position is invalid.
    reason : `numpy.ndarray` of str
        Empty for valid rows, otherwise why the row is invalid (e.g. ``"right
        ascension 400 outside [0, 360] deg"``).
    """

    ra: np.ndarray
    dec: np.ndarray
    reason: np.ndarray

    @property
    def good(self):
        """`numpy.ndarray` of bool: True where the position is valid."""
        return self.reason == ""

    @property
    def coord(self):
        """The positions as an ICRS `~astropy.coordinates.SkyCoord` (NaN where invalid)."""
        return SkyCoord(self.ra * u.deg, self.dec * u.deg, frame="icrs")

    def __len__(self):
        return len(self.ra)

    def first_of(self, decimals=7):
        """For each row, the first row at the same position (positions that agree to
        ``decimals`` decimal places of a degree are the same); -1 where invalid.

        Parameters
        ----------
        decimals : int, optional
            Decimal places of a degree compared (7: about 0.4 mas, the precision the
            services are sent).

        Returns
        -------
        `numpy.ndarray` of int
            ``first[i] == i`` for the first row of each distinct position, so
            ``numpy.flatnonzero(first == numpy.arange(len(first)))`` lists them in
            input order.

        Examples
        --------
        >>> check_degrees([10.0, 20.0, 10.00000001, np.nan], [1.0, 2.0, 1.0, 0.0]).first_of()
        array([ 0,  1,  0, -1])
        """
        first = np.full(len(self), -1)
        seen = {}
        ra, dec = np.round(self.ra, decimals), np.round(self.dec, decimals)
        for i in np.flatnonzero(self.good):
            first[i] = seen.setdefault((ra[i], dec[i]), i)
        return first


def check_degrees(ra, dec, reason=None):
    """Validate right ascension and declination given in degrees.

    Parameters
    ----------
    ra, dec : array-like
        Degrees (NaN for missing values).
    reason : array-like of str, optional
        Reasons already known (e.g. a string that did not parse); kept where set.

    Returns
    -------
    `Positions`
        Invalid rows (non-finite, ``ra`` outside [0, 360], ``dec`` outside
        [-90, 90]) get NaN and their reason.
    """
    ra = np.atleast_1d(np.asarray(ra, dtype=float)).copy()
    dec = np.atleast_1d(np.asarray(dec, dtype=float)).copy()
    if ra.shape != dec.shape:
        raise ValueError(f"right ascension and declination differ in length: {ra.shape} "
                         f"and {dec.shape}")
    out = np.full(ra.shape, "", dtype=object)
    if reason is not None:
        out[:] = np.asarray(reason, dtype=object)
    todo = out == ""
    with np.errstate(invalid="ignore"):
        checks = [
            (~np.isfinite(ra) | ~np.isfinite(dec), lambda i: "NaN or masked position"),
            ((ra < 0) | (ra > 360), lambda i: f"right ascension {ra[i]:g} outside [0, 360] deg"),
            (np.abs(dec) > 90, lambda i: f"declination {dec[i]:g} outside [-90, 90] deg"),
        ]
    for bad, text in checks:
        for i in np.flatnonzero(bad & todo):
            out[i] = text(i)
        todo &= ~bad
    good = out == ""
    ra[~good] = np.nan
    dec[~good] = np.nan
    return Positions(ra, dec, out.astype(str))


def missing_column_error(table, name, what="", option=None):
    """A `KeyError` for a column that does not exist, listing those that do.

    Where a column of the same name in another case exists (``RA`` for ``ra``), the
    message suggests it, as ``option`` when given (e.g. ``"--ra-col"``).

    Parameters
    ----------
    table : `~astropy.table.Table`
    name : str
        The missing column.
    what : str
        What the column holds, for the message (``"right ascension"``).
    option : str, optional
        The option or keyword that chooses the column, for the suggestion.

    Returns
    -------
    KeyError
    """
    label = f"{what} column" if what else "column"
    msg = (f"{label} {name!r} not found; the table has columns: "
           f"{', '.join(table.colnames) or '(none)'}")
    close = [c for c in table.colnames if c.lower() == str(name).lower()]
    if close:
        how = f"{option} {close[0]}" if option else f"{close[0]!r}"
        msg += f". Did you mean {how}?"
    return KeyError(msg)


#: Spellings of angular units that astropy's parsers do not read (lower case, words
#: separated by one space): catalogues and spreadsheets write them.
_UNIT_SPELLINGS = {
    **dict.fromkeys(["deg", "degs", "degree", "degrees", "decimal degree", "decimal degrees",
                     "decdeg", "d:m:s", "dms", "dd:mm:ss", "deg:arcmin:arcsec"], u.deg),
    **dict.fromkeys(["h", "hr", "hrs", "hour", "hours", "hourangle", "hour angle",
                     "hour angles", "h:m:s", "hms", "hh:mm:ss"], u.hourangle),
    **dict.fromkeys(["rad", "rads", "radian", "radians"], u.rad),
    **dict.fromkeys(["arcmin", "arcmins", "arcminute", "arcminutes"], u.arcmin),
    **dict.fromkeys(["arcsec", "arcsecs", "arcsecond", "arcseconds"], u.arcsec),
}


def angle_unit(unit):
    """The unit of a position, astropy's where it recognises it, else a common spelling.

    Astropy's FITS and VOUnit readers leave many units catalogues write unrecognised
    (``TUNIT = 'degree'``, ``'DEGREES'``, ``'hours'``); such a unit (an
    `~astropy.units.UnrecognizedUnit`, or a string) is read again: first as one of the
    common spellings of degrees, hours (of right ascension), radians, arcminutes and
    arcseconds, in any case and singular or plural (``'decimal degrees'``,
    ``'h:m:s'``), then with astropy's generic unit parser. An hour of time (``'h'``,
    which the FITS standard means) is taken as an hour of right ascension
    (``hourangle``).

    Parameters
    ----------
    unit : `~astropy.units.UnitBase` or str or None

    Returns
    -------
    `~astropy.units.UnitBase` or None
        The unit; an `~astropy.units.UnrecognizedUnit` when it is still not
        recognised (callers say so); None for None.

    Examples
    --------
    >>> from astro_mantis.positions import angle_unit
    >>> angle_unit("DEGREES"), angle_unit("hours")
    (Unit("deg"), Unit("hourangle"))
    """
    if unit is None:
        return None
    if isinstance(unit, u.UnitBase) and not isinstance(unit, u.UnrecognizedUnit):
        found = unit
    else:
        text = str(unit.name if isinstance(unit, u.UnrecognizedUnit) else unit).strip()
        key = " ".join(text.lower().replace("_", " ").split())
        found = _UNIT_SPELLINGS.get(key)
        if found is None:
            found = u.Unit(text, format="generic", parse_strict="silent")
    if found == u.hour:  # an hour of time on a position: an hour of right ascension
        return u.hourangle
    return found


def _unit_keyword(what):
    """The keyword (and option) that gives the unit of a ``what`` column."""
    if what == "right ascension":
        return "ra_unit (astro-mantis: --ra-unit)"
    if what == "declination":
        return "dec_unit"
    return "unit"


def _given_unit(unit, what):
    """A unit given by the caller (``ra_unit``), read by `angle_unit`; ValueError when it
    is not recognised."""
    found = angle_unit(unit)
    if isinstance(found, u.UnrecognizedUnit):
        raise ValueError(f"the unit {str(unit)!r} given for the {what or 'angle'} is not a "
                         "unit astropy recognises; give an angular unit such as 'deg' or "
                         "'hourangle'")
    return found


def angle_degrees(text, what="right ascension", unit=None):
    """One angle written as text, in degrees: the package's one reading of angle text.

    A plain number (``"185.0242"``, ``"1e2"``) is in ``unit`` (degrees by default).
    Sexagesimal or unit-marked text (``"12:20:05.8"``, ``"12 20 05.8"``,
    ``"12h20m05.8s"``, ``"+47:11:43"``, ``"47d11m43s"``, ``"47°11′43″"``) is read by
    `~astropy.coordinates.Angle`: a unit written in the text wins; otherwise a right
    ascension is in ``unit``, or in **hours** when no unit is given, and a declination
    in ``unit`` or degrees. A declination written in hours (``"2h"``) is refused:
    hours are for right ascension. Table columns (`column_degrees`), position strings
    (`resolve_name`) and the web service's query parameters all read text here.

    The range is not checked (`check_degrees` does that).

    Parameters
    ----------
    text : str
        The angle as written.
    what : {"right ascension", "declination"} or str
        Which coordinate: ``"right ascension"`` reads unmarked sexagesimal text in
        hours, anything else in degrees. Also names the coordinate in messages.
    unit : `~astropy.units.Unit` or str, optional
        The unit of text that carries none (e.g. a column's ``hourangle``; read by
        `angle_unit`, so ``"hours"`` and ``"degrees"`` are understood).

    Returns
    -------
    float
        Degrees (not wrapped).

    Raises
    ------
    ValueError
        If the text is empty, does not read as an angle, or is a declination in hours;
        the message starts ``"cannot read <what> '<text>'"`` and says why.

    Examples
    --------
    >>> from astro_mantis.positions import angle_degrees
    >>> round(angle_degrees("12:20:05.8"), 5)
    185.02417
    >>> round(angle_degrees("+47:11:43", "declination"), 5)
    47.19528
    """
    s = str(text).strip()
    is_ra = what == "right ascension"
    the_unit = None if unit is None else _given_unit(unit, what)
    try:
        if not s:
            raise ValueError("it is empty")
        if _SEXAGESIMAL.search(s) is None:  # a plain number: degrees, or the unit given
            return float(Angle(float(s), unit=the_unit or u.deg).to_value(u.deg))
        if not is_ra and "h" in s.lower():
            raise ValueError("a declination is not in hours; hours are for right ascension")
        default = the_unit or (u.hourangle if is_ra else u.deg)
        return float(Angle(s, unit=default).to_value(u.deg))
    except (ValueError, u.UnitsError, TypeError) as exc:
        raise ValueError(f"cannot read {what} {s!r}: {exc}") from None


def _parse_strings(values, unit, is_ra):
    """Parse a string array to degrees; unparseable entries give NaN and a reason."""
    text = np.char.strip(np.asarray(values, dtype=str))
    out = np.full(text.shape, np.nan)
    reason = np.full(text.shape, "", dtype=object)
    empty = text == ""
    reason[empty] = "NaN or masked position"
    try:  # plain decimal numbers: degrees unless a unit says otherwise
        nums = np.where(empty, "nan", text).astype(float)
        factor = 1.0 if unit is None else (1 * unit).to_value(u.deg)
        return nums * factor, reason
    except ValueError:
        pass
    what = "right ascension" if is_ra else "declination"
    for i in np.flatnonzero(~empty):
        try:
            out[i] = angle_degrees(text[i], what, unit)
        except ValueError as exc:
            reason[i] = str(exc)
    return out, reason


def column_degrees(table, name, what="angle", unit=None, option=None):
    """A table column as float degrees, NaN where masked or unreadable.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The table.
    name : str
        Column name. Numbers without a unit are degrees; a column with an angular unit
        (or a `~astropy.units.Quantity` column) is converted. String columns may hold
        decimal degrees or sexagesimal values (see the module docstring).
    what : str
        ``"right ascension"``, ``"declination"`` or another label for the messages;
        sexagesimal right ascension is read in hours by default.
    unit : `~astropy.units.Unit` or str, optional
        Unit of a column that has none (e.g. ``"hourangle"``), or whose unit is not
        recognised (see `angle_unit`); a column's own recognised unit wins.
    option : str, optional
        The option that chooses the column, for the message of a missing column.

    Returns
    -------
    degrees : `numpy.ndarray`
        1-D float array.
    reason : `numpy.ndarray` of str
        Per row: empty, or why the value could not be read.

    Raises
    ------
    KeyError
        If the column does not exist (the message lists those that do).
    ValueError
        If it is not one value per row, has a unit that is not an angle or that is
        not recognised (and ``unit`` is not given), holds neither numbers nor
        strings, or is a string column none of whose values reads as an angle (a few
        unreadable values only flag their rows).
    """
    label = f"{what} column" if what else "column"
    if name not in table.colnames:
        raise missing_column_error(table, name, what, option)
    col = table[name]
    if getattr(col, "ndim", 1) != 1:
        raise ValueError(f"{label} {name!r} has shape {col.shape}; expected one value per row")
    col_unit = angle_unit(getattr(col, "unit", None))
    if col_unit is not None and col_unit == u.dimensionless_unscaled:
        col_unit = None
    given = None if unit is None else _given_unit(unit, what)
    if isinstance(col_unit, u.UnrecognizedUnit):
        if given is None:
            raise ValueError(f"{label} {name!r} has unit {col_unit.name!r}, which is not a "
                             "unit astropy recognises; say which angular unit its values "
                             f"are in with {_unit_keyword(what)}, e.g. 'deg' or "
                             "'hourangle'")
        col_unit = None  # the unit the caller gives replaces it
    the_unit = col_unit if col_unit is not None else given
    if the_unit is not None and not the_unit.is_equivalent(u.deg):
        raise ValueError(f"{label} {name!r} has unit {the_unit}, which is not an angle")
    data = np.ma.asarray(col.value if isinstance(col, u.Quantity) else col)
    if data.dtype.kind == "O":  # e.g. pandas text with None, VOTable variable-length text
        data = _object_column(data)
    mask = np.ma.getmaskarray(data)
    if data.dtype.kind in "US":
        values, reason = _parse_strings(np.ma.filled(data, ""), the_unit,
                                        what == "right ascension")
        unread = np.char.startswith(np.asarray(reason, dtype=str), "cannot read")
        if unread.any() and not np.any(np.isfinite(values)):
            first = np.ma.filled(data, "")[np.flatnonzero(unread)[0]]
            raise ValueError(f"{label} {name!r} is not numeric and none of its values reads "
                             f"as an angle (e.g. {str(first)!r}); expected degrees, an "
                             "angular unit, or sexagesimal strings such as '12:20:05.8'")
    elif data.dtype.kind in "biuf":
        values = np.ma.filled(data.astype(float), np.nan)
        if the_unit is not None:
            values = (values * the_unit).to_value(u.deg)
        reason = np.full(values.shape, "", dtype=object)
    else:
        raise ValueError(f"{label} {name!r} is not numeric (dtype {data.dtype}); expected "
                         "angles in degrees, with an angular unit, or as strings")
    reason[mask] = "NaN or masked position"
    values = np.asarray(values, dtype=float)
    values[mask] = np.nan
    return values, np.asarray(reason, dtype=str)


def _object_column(data):
    """An object array as text or numbers (None and masked entries masked); unchanged
    when it holds anything else, which `column_degrees` then refuses."""
    filled = np.ma.getdata(data).ravel()
    missing = np.ma.getmaskarray(data).ravel() | np.array([v is None for v in filled], bool)
    present = [v for v, m in zip(filled, missing) if not m]
    if all(isinstance(v, (str, bytes)) for v in present):
        text = np.array(["" if m else (v.decode() if isinstance(v, bytes) else v)
                         for v, m in zip(filled, missing)], dtype=str)
        return np.ma.MaskedArray(text.reshape(data.shape), mask=missing.reshape(data.shape))
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
           for v in present):
        nums = np.array([np.nan if m else float(v) for v, m in zip(filled, missing)])
        return np.ma.MaskedArray(nums.reshape(data.shape), mask=missing.reshape(data.shape))
    return data


def table_positions(table, coord=None, ra="ra", dec="dec", ra_unit=None, dec_unit=None,
                    options=None):
    """The positions of a table's rows (`Positions`), invalid rows marked with a reason.

    Parameters
    ----------
    table : `~astropy.table.Table` or `~astropy.table.QTable`
    coord : str, optional
        Name of a `~astropy.coordinates.SkyCoord` column (any frame convertible to
        ICRS). When given, ``ra`` and ``dec`` are ignored.
    ra, dec : str
        Right ascension and declination columns (ICRS), see `column_degrees`.
    ra_unit, dec_unit : `~astropy.units.Unit` or str, optional
        Units of columns that carry none.
    options : (str, str), optional
        Names of the options choosing the columns, for the messages (e.g.
        ``("--ra-col", "--dec-col")``).

    Returns
    -------
    `Positions`
    """
    if coord is not None:
        if coord not in table.colnames:
            raise missing_column_error(table, coord, "coordinate")
        sc = table[coord]
        if not isinstance(sc, SkyCoord):
            raise ValueError(f"column {coord!r} is a {type(sc).__name__}, not a SkyCoord; "
                             "pass ra= and dec= column names instead")
        if sc.ndim != 1:
            raise ValueError(f"coordinate column {coord!r} has shape {sc.shape}; expected "
                             "one value per row")
        return coordinate_positions(sc)
    options = options or (None, None)
    ra_deg, ra_reason = column_degrees(table, ra, "right ascension", ra_unit, options[0])
    dec_deg, dec_reason = column_degrees(table, dec, "declination", dec_unit, options[1])
    reason = np.where(ra_reason != "", ra_reason, dec_reason)
    return check_degrees(ra_deg, dec_deg, reason)


def coordinate_positions(coordinates):
    """`Positions` of a `~astropy.coordinates.SkyCoord` (flattened, converted to ICRS).

    Raises
    ------
    TypeError
        If ``coordinates`` is not a SkyCoord.
    ValueError
        If its frame cannot be converted to ICRS.
    """
    return icrs_positions(coordinates)[1]


def icrs_positions(coordinates):
    """The ICRS `~astropy.coordinates.SkyCoord` of positions and their `Positions`.

    One conversion serves both: callers that keep the coordinates themselves (the
    cutouts keep each position's ``coord``) need not convert them twice.

    Parameters
    ----------
    coordinates : `~astropy.coordinates.SkyCoord`
        Scalar or array, in any frame that converts to ICRS.

    Returns
    -------
    icrs : `~astropy.coordinates.SkyCoord`
        The positions in ICRS, flattened to 1-D (a scalar gives one element).
    positions : `Positions`
        Their degrees, validity and reasons (see `check_degrees`).

    Raises
    ------
    TypeError
        If ``coordinates`` is not a SkyCoord.
    ValueError
        If its frame cannot be converted to ICRS.
    """
    if not isinstance(coordinates, SkyCoord):
        raise TypeError(f"coordinates must be an astropy SkyCoord, got "
                        f"{type(coordinates).__name__}")
    try:
        icrs = coordinates.icrs
    except Exception as exc:
        raise ValueError(f"cannot convert coordinates from frame {coordinates.frame.name!r} "
                         f"to ICRS: {exc}") from exc
    icrs = icrs.reshape((1,)) if icrs.isscalar else icrs.reshape(-1)
    spherical = (UnitSphericalRepresentation, SphericalRepresentation)
    if isinstance(icrs.data, spherical) and issubclass(icrs.representation_type, spherical):
        ra = np.ma.filled(np.ma.asarray(icrs.ra.deg, dtype=float), np.nan)
        dec = np.ma.filled(np.ma.asarray(icrs.dec.deg, dtype=float), np.nan)
        return icrs, check_degrees(ra, dec)
    # positions held as vectors (Cartesian ...): the direction of each; a zero-length
    # vector has none (its longitude and latitude would read as 0, 0)
    lonlat = icrs.represent_as(UnitSphericalRepresentation)
    ra = np.ma.filled(np.ma.asarray(lonlat.lon.deg, dtype=float), np.nan)
    dec = np.ma.filled(np.ma.asarray(lonlat.lat.deg, dtype=float), np.nan)
    reason = np.full(ra.shape, "", dtype=object)
    if not isinstance(icrs.data, spherical):
        with np.errstate(invalid="ignore"):
            norm = np.ma.filled(np.ma.asarray(icrs.cartesian.norm().value, dtype=float),
                                np.nan)
        zero = norm == 0
        reason[zero] = "zero-length position vector (no direction)"
        ra[zero] = dec[zero] = np.nan
    pos = check_degrees(ra, dec, reason)
    return SkyCoord(pos.ra * u.deg, pos.dec * u.deg, frame="icrs"), pos


#: One part of a position string: a number, or an angle in sexagesimal or marked units.
_ANGLE_TEXT = re.compile(r"[+-]?[0-9.:hmsd\u00b0'\"\u2032\u2033]+")


def resolve_name(text):
    """A `~astropy.coordinates.SkyCoord` from a position string or an object name.

    ``"12:20:05.8 +47:11:43"`` and ``"12h20m05.8s +47d11m43s"`` (right ascension in
    hours unless marked in degrees) and ``"185.0242 47.1953"`` (degrees) are read
    directly; anything else is looked up with
    `SkyCoord.from_name <astropy.coordinates.SkyCoord.from_name>` (the CDS Sesame
    name resolver, which needs the network). Two parts that both read as angles are
    a position, never a name: one out of range (``"10 95"``) is an error that says
    so, and is not sent to the resolver.

    Parameters
    ----------
    text : str

    Returns
    -------
    `~astropy.coordinates.SkyCoord`

    Raises
    ------
    ValueError
        If the text is a position out of range (right ascension outside [0, 360]
        degrees, declination outside [-90, 90]) or that does not read as one, or it
        is neither a position nor a name the resolver knows, or the resolver cannot
        be reached (the message says so).
    """
    s = str(text).strip()
    if not s:
        raise ValueError("empty position string")
    parts = s.replace(",", " ").split()
    if len(parts) == 2 and all(_is_number(p) or (_ANGLE_TEXT.fullmatch(p) and re.search(r"\d", p))
                               for p in parts):
        return _position(s, parts)
    try:
        return SkyCoord.from_name(s)
    except Exception as exc:  # NameResolveError, or a network blocked outright
        raise ValueError(f"cannot resolve {s!r} to a position: {exc}. Name resolution uses "
                         "the CDS Sesame service and needs the network; offline, give the "
                         "position itself, e.g. SkyCoord(210.80, 54.35, unit='deg') or "
                         "'14:03:12.6 +54:20:56'") from None


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _position(text, parts):
    """The position of a string of two angles (`resolve_name`); a ValueError naming what
    is wrong when they are not a valid position."""
    try:
        ra = angle_degrees(parts[0], "right ascension")
        dec = angle_degrees(parts[1], "declination")
    except ValueError as exc:
        raise ValueError(f"cannot read {text!r} as a position: {exc}") from None
    checked = check_degrees([ra], [dec])
    if not checked.good[0]:
        raise ValueError(f"invalid position {text!r}: {checked.reason[0]}")
    return SkyCoord(float(ra), float(dec), unit="deg", frame="icrs")
