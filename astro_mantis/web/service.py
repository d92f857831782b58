# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The photo-z work behind the web service, free of any web framework.

`PhotozService` holds what the service shares between requests: the model, loaded once
(`astro_mantis.models.load_model`), the dust source and, through ``astro_mantis.conf``,
the survey URLs and the on-disk cutout cache of the library. It turns positions into
tables with `astro_mantis.add_redshift_columns` and tables into the JSON answers of
``POST /predict`` (`PhotozService.row_result`), reads and writes uploaded tables
(`read_upload`, `write_table_bytes`), and draws cutout panels (`cutout_png`).
"""
import io
import math
import re
import tempfile
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import MaskedColumn, Table, vstack

from .._version import __version__
from ..flags import MantisFlag
from ..positions import angle_degrees, column_degrees

__all__ = ["PhotozService", "parse_coordinate", "read_upload", "write_table_bytes",
           "check_output_format", "table_rows_json", "cutout_png", "cutout_fits", "flag_names",
           "UploadTooLarge", "OUTPUT_FORMATS", "INPUT_FORMATS", "MEMORY_FACTOR"]

#: Output formats of the table answers: name → (astropy format, media type, suffix).
OUTPUT_FORMATS = {
    "ecsv": ("ascii.ecsv", "text/plain; charset=utf-8", ".ecsv"),
    "csv": ("ascii.csv", "text/csv; charset=utf-8", ".csv"),
    "fits": ("fits", "application/fits", ".fits"),
    "votable": ("votable", "application/x-votable+xml", ".xml"),
    "json": (None, "application/json", ".json"),
}

#: Readable upload formats: name → astropy format.
INPUT_FORMATS = {"csv": "ascii.csv", "ecsv": "ascii.ecsv", "fits": "fits", "votable": "votable"}

_SUFFIXES = {".csv": "csv", ".ecsv": "ecsv", ".fits": "fits", ".fit": "fits", ".fts": "fits",
             ".xml": "votable", ".vot": "votable", ".votable": "votable"}

_MAX_TEXT = 64

_GZIP_MAGIC = b"\x1f\x8b"

#: Content that astropy's readers would decompress themselves, without a size limit:
#: gzip (once more), bzip2, xz and LZW (``.Z``).
_COMPRESSED = re.compile(rb"\x1f\x8b|\x1f\x9d|\xfd7zXZ\x00|BZh[1-9](1AY&SY|\x17rE8P\x90)")

#: An uploaded table may take at most this many times ``max_bytes`` in memory once read.
MEMORY_FACTOR = 16


class UploadTooLarge(ValueError):
    """An upload whose content, decompressed or read, exceeds the size limits."""


class _Refused(ValueError):
    """An upload refused for what it holds (the message says what), not unreadable."""


def flag_names(value):
    """Names and bits of the `~astro_mantis.MantisFlag` flags set in ``value``.

    Parameters
    ----------
    value : int
        Flag bits.

    Returns
    -------
    names : list of str
    bits : list of int
        In increasing bit order.

    Examples
    --------
    >>> flag_names(514)
    (['PANSTARRS_MISSING', 'NOT_ESTIMATED'], [2, 512])
    """
    value = int(value)
    set_flags = [f for f in MantisFlag if f and (value & f) == f]
    return [f.name for f in set_flags], [int(f) for f in set_flags]


# ------------------------------------------------------------------------ positions
def parse_coordinate(value, axis):
    """One coordinate from a request: a number of degrees or a sexagesimal string.

    Numbers, and strings holding a number, are degrees. Other strings are read as
    the library reads angle text (`astro_mantis.positions.angle_degrees`): for right
    ascension, hours unless the text says degrees (``"10h00m28.6s"``, ``"10:00:28.6"``,
    ``"10 00 28.6"`` are hours; ``"150d07m09s"`` degrees); for declination, degrees
    (``"+02:12:21"``, ``"2d12m21s"``; hours such as ``"2h"`` are refused).

    Parameters
    ----------
    value : float, int or str
        The value as sent.
    axis : {"RA", "DEC"}
        Which coordinate (for the range check and the messages).

    Returns
    -------
    float
        Degrees: RA in [0, 360), Dec in [-90, 90].

    Raises
    ------
    ValueError
        For anything else, with a message saying what was expected.
    """
    axis = axis.upper()
    if axis not in ("RA", "DEC"):
        raise ValueError(f"axis must be 'RA' or 'DEC'; got {axis!r}")
    expect = ("degrees in [0, 360) or sexagesimal hours such as '10:00:28.6' or '10h00m28.6s'"
              if axis == "RA" else
              "degrees in [-90, 90] or sexagesimal degrees such as '+02:12:21' or '2d12m21s'")
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{axis} must be {expect}; got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > _MAX_TEXT:
            raise ValueError(f"{axis} must be {expect}; got {value[:_MAX_TEXT]!r}")
        try:
            deg = float(text)
        except ValueError:  # the library's one reading of angle text
            try:
                deg = angle_degrees(text, "right ascension" if axis == "RA" else "declination")
            except ValueError as exc:
                raise ValueError(f"{axis} must be {expect}; {exc}") from None
    elif isinstance(value, (int, float, np.integer, np.floating)):
        try:
            deg = float(value)
        except OverflowError:
            raise ValueError(f"{axis} {str(value)[:20]}... is out of range: expected "
                             f"{expect}") from None
    else:
        raise ValueError(f"{axis} must be {expect}; got a {type(value).__name__}")
    if not math.isfinite(deg):
        raise ValueError(f"{axis} must be a finite number ({expect}); got {value!r}")
    if axis == "RA" and not 0.0 <= deg < 360.0:
        raise ValueError(f"RA {deg:g} deg is out of range: expected [0, 360) degrees")
    if axis == "DEC" and not -90.0 <= deg <= 90.0:
        raise ValueError(f"DEC {deg:g} deg is out of range: expected [-90, 90] degrees")
    return deg


def _text_column_degrees(table, name, axis):
    """Degrees from a column of strings, as the library reads them; NaN where unreadable.

    `astro_mantis.positions.column_degrees` reads the text: decimal degrees, or
    sexagesimal (right ascension in hours), in the column's unit when it has one
    (``"185:01:27.1"`` with unit ``deg`` is degrees, ``"12.5"`` with unit
    ``hourangle`` is 187.5 degrees). Declinations written in hours are refused, as by
    `parse_coordinate`.
    """
    what = "right ascension" if axis == "RA" else "declination"
    values, _reason = column_degrees(table, name, what)  # a Dec in hours: NaN there too
    return values


# ------------------------------------------------------------------------ tables
def _guess_format(filename, head):
    suffix = "".join(Path(filename or "").suffixes[-2:]).lower()
    if suffix.endswith(".gz"):
        suffix = suffix[:-3]
    suffix = Path("x" + suffix).suffix if suffix else ""
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if head.lstrip().startswith(b"# %ECSV"):
        return "ecsv"
    if head.lstrip()[:100].lower().startswith((b"<?xml", b"<votable")):
        return "votable"
    return "csv"


def _gunzip(data, max_bytes):
    """The content of gzip data (every member), at most ``max_bytes`` of it."""
    import zlib

    out, rest = [], bytes(data)
    size = 0
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = d.decompress(rest, 0 if max_bytes is None else max_bytes - size + 1)
        except zlib.error as exc:
            raise ValueError(f"the upload is gzip-compressed but could not be decompressed: "
                             f"{exc}") from None
        size += len(part)
        if max_bytes is not None and size > max_bytes:
            raise UploadTooLarge(f"the decompressed upload exceeds the limit of {max_bytes} "
                                 "bytes")
        if not d.eof:
            raise ValueError("the upload is gzip-compressed but truncated")
        out.append(part)
        rest = d.unused_data
        if rest and not rest.startswith(_GZIP_MAGIC):
            break  # trailing bytes after the last member: ignored, as gzip does
    return b"".join(out)


def read_upload(data, filename=None, format=None, max_bytes=None):
    """Read an uploaded table.

    The content is given to astropy's readers as a file object, never as a string
    (which they would take for a file name or URL to open). What the readers would
    fetch or decompress themselves, or blow up in memory, is refused before they run:
    VOTables whose ``STREAM`` elements point at data elsewhere (``href``), content
    compressed other than by one layer of gzip, and FITS variable-length array
    columns (``TFORM`` ``P`` or ``Q``: every row may point at the same data). With
    ``max_bytes``, a table that would take more than `MEMORY_FACTOR` times
    ``max_bytes`` in memory is refused too: estimated before reading where the
    format declares sizes (VOTable fields and rows, text column widths), and checked
    on the table read.

    Parameters
    ----------
    data : bytes
        The file's content; gzip-compressed content (``.csv.gz``, ``.fits.gz`` ...) is
        decompressed first. Text (CSV, ECSV) is UTF-8, with or without a byte-order
        mark.
    filename : str, optional
        Its name (the suffix tells the format when ``format`` is not given; a ``.gz``
        after it is skipped).
    format : {"csv", "ecsv", "fits", "votable"}, optional
        The format; guessed from the name, else from the content, when not given.
    max_bytes : int, optional
        Most bytes the decompressed content of a gzip upload may have;
        `MEMORY_FACTOR` times it bounds the table in memory.

    Returns
    -------
    table : `~astropy.table.Table`
    format : str
        The format read.

    Raises
    ------
    UploadTooLarge
        If decompressed content exceeds ``max_bytes``, or the table would take more
        than `MEMORY_FACTOR` times ``max_bytes`` in memory.
    ValueError
        If the format is unknown, the content cannot be read as that format, or
        holds what is refused (the message says what: a ``STREAM`` with ``href``, a
        variable-length array column naming it, compression other than gzip).
    """
    if format is not None and format not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {format!r}; expected one of "
                         f"{', '.join(INPUT_FORMATS)}")
    if not data:
        raise ValueError("the uploaded file is empty")
    data = bytes(data)
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip(data, max_bytes)
        if not data:
            raise ValueError("the uploaded file is empty (once decompressed)")
    if _COMPRESSED.match(data):  # astropy would decompress it, without any limit
        raise ValueError("the upload is compressed more than once, or other than with "
                         "gzip; send it uncompressed or gzip-compressed (once)")
    fmt = format or _guess_format(filename, data[:512])
    limit = None if max_bytes is None else MEMORY_FACTOR * int(max_bytes)
    try:
        if fmt == "fits":
            _check_fits(data)
            table = Table.read(io.BytesIO(data), format="fits")
        elif fmt == "votable":
            _check_votable(data, limit)
            table = Table.read(io.BytesIO(data), format="votable")
        else:  # utf-8-sig: a byte-order mark (as spreadsheets write) is not a column name
            text = data.decode("utf-8-sig")
            _check_text(text, fmt, limit)
            # a list of lines: astropy tries to open a string as a file name or URL
            # first (and fetches "http://..." even with a line break after it); a file
            # object with an encoding turns its fast C reader off (4x slower)
            # (split at line breaks only: str.splitlines also splits at \x0c, \u2028 ...)
            lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            table = Table.read(lines, format=INPUT_FORMATS[fmt])
    except _Refused:
        raise
    except Exception as exc:  # astropy raises many kinds for unreadable tables
        raise ValueError(f"could not read the upload as {fmt.upper()}: "
                         f"{type(exc).__name__}: {str(exc)[:300]}") from None
    _check_table(table, limit)
    return table, fmt


def _too_large(estimate, limit, when):
    return _TooLargeRefused(f"the table would take about {_mib(estimate)} in memory "
                            f"{when}, more than the limit of {_mib(limit)} ({MEMORY_FACTOR} "
                            "times the upload size limit); split it, or run "
                            "'astro-mantis predict' locally")


def _mib(n):
    return f"{n / 1024 ** 2:.1f} MiB"


class _TooLargeRefused(UploadTooLarge, _Refused):
    """`UploadTooLarge` raised from within the readers' guard."""


def _check_fits(data):
    """Refuse variable-length array columns (``TFORM`` ``P``/``Q``) before reading.

    Their rows point into the heap, and every row may point at the same block: a small
    file would become a table many times larger. The headers are read, not the data.
    """
    from astropy.io import fits

    with fits.open(io.BytesIO(data), lazy_load_hdus=True, memmap=False) as hdul:
        for hdu in hdul:  # headers only: the data is not read
            header = hdu.header
            if (str(header.get("XTENSION", "")).strip().upper() not in ("BINTABLE", "TABLE")
                    or header.get("ZIMAGE", False) is True):
                continue
            for key, value in header.items():
                number = key[5:] if key.startswith("TFORM") else ""
                if number.isdigit() and re.match(r"\s*\d*\s*[PQ]", str(value), re.I):
                    name = header.get(f"TTYPE{number}", f"number {number}")
                    raise _Refused(f"column {str(name)!r} is a variable-length array column "
                                   f"(TFORM {str(value).strip()!r}), which uploads may not "
                                   "have; remove it, or write it as a fixed-size array")


#: Bytes of one VOTable value in memory, by datatype (text: astropy's str, 4 per
#: character).
_VOT_BYTES = {"boolean": 1, "bit": 1, "unsignedByte": 1, "short": 2, "int": 4, "long": 8,
              "char": 4, "unicodeChar": 4, "float": 4, "double": 8, "floatComplex": 8,
              "doubleComplex": 16}


def _vot_field_bytes(attrs):
    """Bytes a VOTable FIELD takes per row in memory (its mask included), as astropy's
    reader sizes it; variable-length parts count as a pointer (the file holds them)."""
    datatype = attrs.get("datatype")
    item = _VOT_BYTES.get(datatype, 16)
    arraysize = str(attrs.get("arraysize") or "1").strip()
    try:
        if datatype in ("char", "unicodeChar"):
            if arraysize == "*":
                return 8 + 1
            return item * int(arraysize.removesuffix("*")) + 1
        if arraysize.endswith("*"):  # the last dimension is variable: objects
            return 8 + 1
        count = 1
        for dim in arraysize.split("x"):
            count *= int(dim)
        return (item + 1) * count
    except ValueError:
        return item + 1  # astropy refuses the arraysize itself


def _check_votable(data, limit):
    """Refuse a VOTable that makes astropy fetch data, or that is too large in memory.

    A ``STREAM`` with an ``href`` (in ``FITS``, ``BINARY``, ``BINARY2`` or
    ``PARQUET``) makes astropy's reader open that URL or file; such tables are
    refused. The fields and rows of each table (``TR`` elements, or ``nrows`` when
    larger) give its size in memory: a field declared ``arraysize="100000"`` takes
    that much for every row, however short the values written. The XML is scanned
    with astropy's own parser, so both see the same elements.
    """
    from astropy.utils.xml.iterparser import get_xml_iterator

    tables = []
    with get_xml_iterator(io.BytesIO(data)) as iterator:
        for start, tag, attrs, _pos in iterator:
            if not start:
                continue
            name = tag.rpartition(":")[2].upper()
            if name == "STREAM":
                hrefs = [k for k in attrs if k.rpartition(":")[2].lower() == "href"]
                if hrefs:
                    raise _Refused("the VOTable has a STREAM that points at data elsewhere "
                                   f"({hrefs[0]}={str(attrs[hrefs[0]])[:100]!r}); uploads "
                                   "must hold their data (TABLEDATA, or BINARY/BINARY2 "
                                   "inline)")
            elif name == "TABLE":
                try:
                    declared = max(int(attrs.get("nrows") or 0), 0)
                except ValueError:
                    declared = 0
                tables.append([declared, 0, 0])  # declared rows, TR seen, bytes per row
            elif tables and name == "FIELD":
                tables[-1][2] += _vot_field_bytes(attrs)
            elif tables and name == "TR":
                tables[-1][1] += 1
    estimate = sum(max(declared, seen) * width for declared, seen, width in tables)
    if limit is not None and estimate > limit:
        raise _too_large(estimate, limit, "once read (its fields and rows)")


def _check_text(text, fmt, limit):
    """Refuse CSV or ECSV text whose table would be too large in memory.

    A text column is as wide, in every row, as its longest value (4 bytes a
    character): one long value makes every row take that much. The widths are
    measured with Python's csv module before astropy's reader allocates them.
    """
    if limit is None:
        return
    import csv

    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # a row takes at most 9 bytes (an 8-byte number and its mask) for each character of
    # the columns' longest values, which are distinct parts of the text, and for each
    # column (fewer than the characters of a line, plus one)
    if len(lines) * 18 * (len(text) + 1) <= limit:
        return
    delimiter = ","
    if fmt == "ecsv":
        header = [line for line in lines if line.lstrip().startswith("#")]
        lines = [line for line in lines if not line.lstrip().startswith("#")]
        delimiter = "," if any(re.match(r"#\s*delimiter:\s*['\"]?,", line.lstrip())
                               for line in header) else " "
    widths = []
    rows = 0
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    try:
        for cells in csv.reader(lines, delimiter=delimiter,
                                skipinitialspace=delimiter == " "):
            rows += 1
            lengths = [len(c) for c in cells]
            if len(lengths) > len(widths):
                widths.extend([0] * (len(lengths) - len(widths)))
            widths[:len(lengths)] = map(max, widths, lengths)
    except csv.Error as exc:
        raise _Refused(f"could not read the upload as {fmt.upper()}: {exc}") from None
    estimate = rows * sum(max(4 * w, 8) + 1 for w in widths)
    if estimate > limit:
        raise _too_large(estimate, limit, "once read (its longest values)")


def _table_bytes(table):
    """Bytes a table takes in memory: its columns, their masks and objects."""
    total = 0
    for col in table.itercols():
        total += int(getattr(getattr(col, "data", col), "nbytes", 0) or 0)
        total += int(getattr(getattr(col, "mask", None), "nbytes", 0) or 0)
        if getattr(col, "dtype", None) is not None and col.dtype.kind == "O":
            for value in np.ma.getdata(col).ravel():
                if isinstance(value, (str, bytes)):
                    total += len(value)
                else:
                    total += int(getattr(value, "nbytes", 0) or 0)
    return total


def _check_table(table, limit):
    """Refuse columns of variable-length arrays and, with a limit, tables too large in
    memory (the checks of the table read)."""
    for name in table.colnames:
        col = table[name]
        if getattr(col, "dtype", None) is None or col.dtype.kind != "O":
            continue
        values = np.ma.getdata(col).ravel()
        if any(not (v is None or isinstance(v, (str, bytes, int, float, np.generic)))
               for v in values):
            raise _Refused(f"column {name!r} holds arrays or other objects of varying "
                           "size (a variable-length array column), which uploads may not "
                           "have; remove it, or write it as a fixed-size array")
    if limit is not None:
        size = _table_bytes(table)
        if size > limit:
            raise _too_large(size, limit, "as read")


def _find_column(table, name, default):
    """A column name, matching a default name case-insensitively ('RA' for 'ra')."""
    if name is not None:
        if name not in table.colnames:
            raise KeyError(f"column {name!r} not found; the table has columns: "
                           f"{', '.join(table.colnames) or '(none)'}")
        return name
    for col in table.colnames:
        if col.lower() == default:
            return col
    raise KeyError(f"no {default!r} column (any case) in the table; name the position "
                   f"columns with ra_col and dec_col; the table has columns: "
                   f"{', '.join(table.colnames) or '(none)'}")


def _non_ascii(text):
    return any(ord(c) > 127 for c in str(text))


def _fits_text_problem(table):
    """Why FITS cannot hold a table's text (None if it can): the column and a value.

    FITS text (column names, string values, header values) is ASCII.
    """
    for name in table.colnames:
        if _non_ascii(name):
            return f"the column name {name!r} is not ASCII"
        col = table[name]
        if getattr(col, "dtype", None) is None or col.dtype.kind not in "UO":
            continue
        data = np.ma.getdata(col).ravel()
        keep = ~np.ma.getmaskarray(col).ravel()
        for i in np.flatnonzero(keep):
            value = data[i]
            if isinstance(value, bytes) or value is None:
                continue
            if _non_ascii(value):
                row = i // max(int(np.prod(col.shape[1:])), 1)
                return (f"column {name!r} holds text that is not ASCII (row {row}: "
                        f"{str(value)[:40]!r})")
    for key, value in table.meta.items():
        if isinstance(value, str) and (_non_ascii(key) or _non_ascii(value)):
            return f"the table meta {str(key)[:40]!r} is not ASCII"
    return None


def _fits_refusal(problem):
    return (f"cannot write the table as FITS: {problem}, and FITS holds ASCII text only; "
            "choose the format ecsv, csv, votable or json")


def check_output_format(table, format):
    """Check that a table can be written in an output format, before any work.

    For FITS the text of every row is checked (FITS holds ASCII text only); for every
    format the first rows are written once, so that columns the format cannot hold are
    found now.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The table to write (the upload with its text positions read as degrees, or
        the one-row table of a position).
    format : {"ecsv", "csv", "fits", "votable", "json"}

    Raises
    ------
    ValueError
        Naming the column at fault and the formats that can hold it.
    """
    if format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {format!r}; expected one of "
                         f"{', '.join(OUTPUT_FORMATS)}")
    if format == "fits":
        problem = _fits_text_problem(table)
        if problem:
            raise ValueError(_fits_refusal(problem))
    write_table_bytes(table[:2], format)


def write_table_bytes(table, format):
    """A table as the bytes of a file.

    The FITS, VOTable and ECSV answers keep the ``z_pdf`` column whole (400 values per
    row) and the table meta (VOTable: as ``INFO`` elements of the table, written by
    `astro_mantis.tableio.write_table`, which `astro_mantis.tableio.read_table` reads
    back; astropy's own VOTable reader skips them). CSV cannot hold a column of
    arrays, so there ``z_pdf`` becomes 400 columns ``z_pdf_000`` ... ``z_pdf_399``
    (bin *k* covers ``[edges[k], edges[k+1])``; the edges are in the other formats'
    meta and in the JSON answers), and a column of higher dimension one column per
    element (``name_i_j``); CSV keeps no meta. FITS holds ASCII text only: a table with
    other text is refused. ``json`` gives `table_rows_json`.

    Parameters
    ----------
    table : `~astropy.table.Table`
    format : {"ecsv", "csv", "fits", "votable", "json"}

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        If the format is unknown, or cannot hold the table (the message names the
        column).
    """
    if format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {format!r}; expected one of "
                         f"{', '.join(OUTPUT_FORMATS)}")
    if format == "json":
        import json

        return json.dumps(table_rows_json(table), allow_nan=False).encode()
    if format == "fits":
        problem = _fits_text_problem(table)
        if problem:
            raise ValueError(_fits_refusal(problem))
    if format == "csv":
        table = _flatten_arrays(table)
    try:
        if format == "votable":
            return _votable_bytes(table)
        if format == "fits":
            buf = io.BytesIO()
            table.write(buf, format=OUTPUT_FORMATS[format][0])
            return buf.getvalue()
        buf = io.StringIO()
        table.write(buf, format=OUTPUT_FORMATS[format][0])
        return buf.getvalue().encode("utf-8")
    except Exception as exc:  # astropy's writers raise many kinds for what they cannot hold
        raise ValueError(f"cannot write the table as {format.upper()}: "
                         f"{type(exc).__name__}: {str(exc)[:300]}") from None


def _votable_bytes(table):
    """A VOTable with the table meta as INFO elements (`astro_mantis.tableio`)."""
    from ..tableio import write_table

    with tempfile.TemporaryDirectory(prefix="astro_mantis_vot_") as tmp:
        path = Path(tmp) / "table.xml"
        write_table(table, path, format="votable")
        return path.read_bytes()


def _flatten_arrays(table):
    out = Table(meta=table.meta)
    for name in table.colnames:
        col = table[name]
        ndim = getattr(col, "ndim", 1)
        if ndim == 2:
            width = len(str(col.shape[1] - 1))
            for k in range(col.shape[1]):
                out[f"{name}_{k:0{width}d}"] = col[:, k]
        elif ndim > 2:  # one column per element: name_i_j (each index zero-padded)
            widths = [len(str(n - 1)) for n in col.shape[1:]]
            for index in np.ndindex(*col.shape[1:]):
                label = "_".join(f"{i:0{w}d}" for i, w in zip(index, widths))
                out[f"{name}_{label}"] = col[(slice(None),) + index]
        else:
            out[name] = col
    return out


def _json_value(value):
    if value is np.ma.masked:
        return None
    if isinstance(value, np.ma.MaskedArray):
        return [None if m else _json_value(v) for v, m in
                zip(np.ma.getdata(value).tolist(), np.ma.getmaskarray(value).tolist())]
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if not isinstance(value, str) else value


def table_rows_json(table, prefix="z_"):
    """A table with redshift columns as a JSON-ready dict, one object per row.

    Parameters
    ----------
    table : `~astropy.table.Table`
    prefix : str
        Prefix of the redshift columns.

    Returns
    -------
    dict
        ``{"columns": [...], "meta": {...}, "rows": [{column: value, ...,
        "<prefix>flag_names": [...]}, ...]}``; masked and non-finite values are
        ``null``.
    """
    rows = []
    flags_col = f"{prefix}flags"
    for row in table:
        obj = {name: _json_value(row[name]) for name in table.colnames}
        if flags_col in table.colnames:
            obj[f"{prefix}flag_names"] = flag_names(row[flags_col])[0]
        rows.append(obj)
    meta = {k: _json_value(v) for k, v in table.meta.items()
            if isinstance(v, (str, int, float, bool, np.generic))}
    return {"columns": list(table.colnames), "meta": meta, "rows": rows}


# ------------------------------------------------------------------------ cutouts
def cutout_fits(cut, survey=None):
    """A cutout as multi-extension FITS bytes (all surveys, or one).

    Parameters
    ----------
    cut : `~astro_mantis.MultiSurveyCutout`
    survey : str, optional
        Keep only this survey's image extensions (the primary header keeps the
        position, flags and status of all).

    Returns
    -------
    bytes
    """
    hdul = cut.to_hdulist()
    if survey is not None:
        from astropy.io import fits

        keep = [h for h in hdul[1:] if str(h.header.get("SURVEY", "")).lower() == survey]
        hdul = fits.HDUList([hdul[0]] + keep)
    buf = io.BytesIO()
    hdul.writeto(buf, checksum=True)
    return buf.getvalue()


def cutout_png(cut, layout="row", dpi=80):
    """The nine-band panel of a cutout as PNG bytes.

    Parameters
    ----------
    cut : `~astro_mantis.MultiSurveyCutout`
    layout : {"row", "grid"}
        One row of nine panels (`~astro_mantis.MultiSurveyCutout.plot`), or a 3 x 3
        grid for narrow (phone) screens.
    dpi : int

    Returns
    -------
    bytes
    """
    from ..plotting import get_figure, save_figure

    if layout == "row":
        fig = get_figure(figsize=(14, 2.3), layout="constrained")
        cut.plot(fig=fig)
    elif layout == "grid":
        fig = get_figure(figsize=(5.4, 6.0), layout="constrained")
        _grid_panels(cut, fig)
    else:
        raise ValueError(f"layout must be 'row' or 'grid'; got {layout!r}")
    buf = io.BytesIO()
    save_figure(fig, buf, format="png", dpi=dpi)
    return buf.getvalue()


def _grid_panels(cut, fig):
    """The bands of a cutout three to a row (the nine of the model: a 3 x 3 grid)."""
    from ..plotting import image_panels
    from ..surveys import SURVEYS

    panels = []
    for name, survey in SURVEYS.items():
        image = cut.surveys.get(name)
        message = cut.status.get(name, "missing")
        for i, band in enumerate(survey.bands):
            panels.append((f"{name} {band}", None if image is None else image.data[i], message))
    return image_panels(panels, fig=fig, shape=(max(math.ceil(len(panels) / 3), 1), 3))


# ------------------------------------------------------------------------ the service
class PhotozService:
    """The shared state and the blocking work of the web service.

    Parameters
    ----------
    settings : `~astro_mantis.web.WebSettings`
        Model, device and the demo switch are read from it.
    sky : `~astro_mantis.simulate.SampleSky`, optional
        In demo mode, the sample sky (its catalog gives the dust values of its
        galaxies and the example positions); loaded when not given.

    Attributes
    ----------
    model : `torch.nn.Module`
        The network, loaded once.
    model_name, sha256 : str
        Its registry name and the SHA-256 of its weights.
    """

    def __init__(self, settings, sky=None):
        from ..models import load_model

        self.settings = settings
        self.model = load_model(settings.model, weights=settings.weights,
                                device=settings.device or "cpu")
        meta = dict(getattr(self.model, "meta", {}) or {})
        self.model_name = str(meta.get("name", settings.model))
        self.sha256 = str(meta.get("sha256") or "")
        self.sky = None
        if settings.demo:
            if sky is None:
                from ..simulate import SampleSky

                sky = SampleSky()
            self.sky = sky
        self._tmp = tempfile.TemporaryDirectory(prefix="astro_mantis_web_")
        self.workdir = Path(self._tmp.name)

    def close(self):
        """Remove the service's temporary files."""
        self._tmp.cleanup()

    # -------------------------------------------------------------- shared pieces
    @property
    def model_info(self):
        """``{"name", "sha256", "version"}`` of the model and the package."""
        return {"name": self.model_name, "sha256": self.sha256,
                "version": f"astro_mantis {__version__}"}

    def _ebv(self):
        """The dust argument of `~astro_mantis.add_redshift_columns`."""
        if self.sky is None:
            return None  # dustmaps when installed with its maps, else flagged zeros
        sky = self.sky
        cat = sky.catalog
        csfd = np.asarray(cat["ebv_csfd"], float)
        planck = np.asarray(cat["ebv_planck"], float)

        def sample_sky_dust(coords):
            out = np.full((len(coords), 2), np.nan)
            for i, (ra, dec) in enumerate(zip(coords.ra.deg, coords.dec.deg)):
                if np.isfinite(ra) and np.isfinite(dec):
                    k = sky.find((float(ra), float(dec)), radius=1.0)
                    if k is not None:
                        out[i] = (csfd[k], planck[k])
            return out
        return sample_sky_dust

    def examples(self, n=6):
        """Example positions: sample galaxies in demo mode, none otherwise.

        Parameters
        ----------
        n : int
            How many.

        Returns
        -------
        list of dict
            ``{"NAME", "RA", "DEC", "note"}``.
        """
        if self.sky is None:
            return []
        from ..demo import demo_positions

        ra, dec, labels, index = demo_positions(n + 1, sky=self.sky)
        cat = self.sky.catalog
        ids = np.asarray(cat["id"]) if "id" in cat.colnames else None
        out = []
        for r, d, label, k in zip(ra, dec, labels, index):
            if k < 0:
                continue
            ident = int(ids[k]) if ids is not None else int(k)
            out.append({"NAME": f"sample-{ident}", "RA": round(float(r), 6),
                        "DEC": round(float(d), 6),
                        "note": label or "sample galaxy (simulated)"})
        return out[:n]

    # -------------------------------------------------------------- photo-z
    def add_columns(self, table, ra="ra", dec="dec"):
        """`~astro_mantis.add_redshift_columns` with the service's model and dust.

        Parameters
        ----------
        table : `~astropy.table.Table`
            Modified in place.
        ra, dec : str
            Position columns (degrees).

        Returns
        -------
        `~astropy.table.Table`
        """
        from ..table import add_redshift_columns

        return add_redshift_columns(table, ra=ra, dec=dec, model=self.model, ebv=self._ebv(),
                                    progress=False, cache=True)

    def predict_positions(self, positions):
        """Redshift columns for positions, as one table (the batch of ``POST /predict``).

        Parameters
        ----------
        positions : list of tuple
            ``(name, ra_deg, dec_deg)``.

        Returns
        -------
        `~astropy.table.Table`
            Columns ``NAME``, ``ra``, ``dec`` and the redshift columns, one row per
            position in order.
        """
        names = ["" if p[0] is None else str(p[0]) for p in positions]
        table = Table({"NAME": np.array(names, dtype=str),
                       "ra": np.array([p[1] for p in positions], float) * u.deg,
                       "dec": np.array([p[2] for p in positions], float) * u.deg})
        return self.add_columns(table)

    def predict_many(self, payloads):
        """Batch function of the work queue: each payload a position, each result a dict.

        Parameters
        ----------
        payloads : list of tuple
            ``(name, ra_deg, dec_deg)``.

        Returns
        -------
        list of dict
            `row_result` of each position.
        """
        table = self.predict_positions(payloads)
        return [self.row_result(table, i, name=p[0]) for i, p in enumerate(payloads)]

    def row_result(self, table, i, name=None, prefix="z_"):
        """The ``POST /predict`` answer for one row of a table with redshift columns.

        Parameters
        ----------
        table : `~astropy.table.Table`
        i : int
            Row.
        name : str or int, optional
            The request's ``NAME``, echoed.
        prefix : str
            Prefix of the redshift columns.

        Returns
        -------
        dict
            The reference web app's fields ``RA``, ``DEC``, ``photo_z`` (the PDF mean),
            ``CDE`` (``[[p_0, ..., p_399]]``, the probability of each bin, summing to
            1), ``CalPit`` and ``PDF`` (both false: no CalPit recalibration, and ``CDE``
            is not a density), then ours: ``NAME``, ``estimated``, ``z_mean``,
            ``z_median``, ``z_mode``, ``z_std``, ``z_odds`` (the probability that
            ``z_median`` is within 0.05 (1 + z) of the truth, `~astro_mantis.pdf.RedshiftPDF.odds`),
            ``intervals`` (``"68"`` and ``"95"``:
            ``[lo, hi]``), ``bin_edges`` (401), ``pdf`` (400 densities, integrating
            to 1), ``flags`` (``value``, ``names``, ``bits``) and ``model`` (``name``,
            ``sha256``, ``version``).
        """
        from ..pdf import RedshiftPDF

        row = table[i]
        flags = int(row[f"{prefix}flags"])
        names, bits = flag_names(flags)
        edges = np.asarray(table[f"{prefix}pdf"].meta.get("bin_edges"), float)
        estimated = not bool(np.ma.is_masked(row[f"{prefix}mean"]))

        def val(key):
            v = row[f"{prefix}{key}"]
            return None if np.ma.is_masked(v) or not np.isfinite(v) else float(v)

        result = {"RA": float(np.ma.getdata(table["ra"])[i]) if "ra" in table.colnames else None,
                  "DEC": float(np.ma.getdata(table["dec"])[i]) if "dec" in table.colnames
                  else None,
                  "photo_z": val("mean"), "CDE": None, "CalPit": False, "PDF": False,
                  "NAME": name, "estimated": estimated,
                  "z_mean": val("mean"), "z_median": val("median"), "z_mode": val("mode"),
                  "z_std": val("std"), "z_odds": val("odds"),
                  "intervals": {"68": None, "95": None},
                  "bin_edges": [float(e) for e in edges], "pdf": None,
                  "flags": {"value": flags, "names": names, "bits": bits},
                  "model": self.model_info}
        if estimated:
            pdf = RedshiftPDF.from_table(table[i:i + 1], prefix=prefix)
            density = np.asarray(pdf.pdf[0], float)
            prob = density * np.diff(edges)
            lo95, hi95 = pdf.interval(0.95)
            result.update({
                "CDE": [[float(p) for p in prob]],
                "pdf": [float(p) for p in density],
                "intervals": {"68": [val("lo68"), val("hi68")],
                              "95": [float(lo95[0]), float(hi95[0])]},
            })
        return result

    def check_table(self, table, ra_col=None, dec_col=None, format=None):
        """Check an upload before any work, and read its text positions into degrees.

        The checks of `predict_table`, made once on the request (so that a table that
        would fail does so before a job is created): the position columns exist and
        hold angles, the table has no redshift columns yet, and the output format can
        hold the table written (whose text position columns are degrees).

        Parameters
        ----------
        table : `~astropy.table.Table`
            The upload (not modified).
        ra_col, dec_col : str, optional
            Position columns (default: ``ra``/``dec`` in any case).
        format : str, optional
            Output format to check (see `check_output_format`).

        Returns
        -------
        work : `~astropy.table.Table`
            A copy of the table whose text position columns are replaced by degrees
            (read as `astro_mantis.add_redshift_columns` reads them, in the column's unit
            when it has one); unreadable values are NaN (flagged rows).
        ra_name, dec_name : str
            The position columns.

        Raises
        ------
        KeyError
            If a position column does not exist (the message lists the columns).
        ValueError
            If the table already has redshift columns, a position column is unusable
            (not an angle, not one value per row, no readable value), or the output
            format cannot hold the table.
        """
        from ..positions import column_degrees
        from ..table import column_names

        ra_name = _find_column(table, ra_col, "ra")
        dec_name = _find_column(table, dec_col, "dec")
        present = [c for c in column_names() if c in table.colnames]
        if present:
            raise ValueError(f"the table already has the column(s) {', '.join(present)}; "
                             "remove or rename them")
        work = Table(table, copy=True)
        for name, axis in ((ra_name, "RA"), (dec_name, "DEC")):
            col = work[name]
            if col.dtype.kind in "USO":
                unit = getattr(col, "unit", None)
                note = f" (unit {unit})" if unit is not None else ""
                work[name] = MaskedColumn(_text_column_degrees(work, name, axis), unit=u.deg,
                                          description=f"{axis} in degrees (read from "
                                                      f"text{note})")
            else:  # an angle, one value per row (the errors add_redshift_columns would raise)
                column_degrees(work, name, "right ascension" if axis == "RA" else "declination")
        if format is not None:  # the table written: text positions are degrees there
            check_output_format(work, format)
        return work, ra_name, dec_name

    def predict_table(self, table, ra_col=None, dec_col=None, slice_rows=256, progress=None,
                      cancel=None):
        """Redshift columns for an uploaded table, slice by slice.

        Parameters
        ----------
        table : `~astropy.table.Table`
            The upload (not modified).
        ra_col, dec_col : str, optional
            Position columns (default: ``ra``/``dec`` in any case). Numeric columns
            are degrees unless they carry an angular unit; string columns may hold
            decimal or sexagesimal text, read as `astro_mantis.add_redshift_columns`
            reads it: in the column's unit when it has one, else degrees, and
            sexagesimal right ascension in hours (see `astro_mantis.positions`; a
            declination in hours is refused). Unreadable values become flagged rows
            (a text column none of whose values reads is refused, see
            ``check_table``).
        slice_rows : int
            Rows per call of `~astro_mantis.add_redshift_columns` (progress and
            cancellation are checked between slices).
        progress : callable, optional
            ``progress(rows_done)`` after each slice.
        cancel : `threading.Event`, optional
            When set, the work stops before the next slice with
            `~astro_mantis.web.ServiceClosed`.

        Returns
        -------
        `~astropy.table.Table`
            The input columns, row for row, and the redshift columns; text position
            columns are replaced by degrees.

        Raises
        ------
        KeyError
            If a position column does not exist (the message lists the columns).
        ValueError
            If the table already has redshift columns or a position column is unusable
            (see ``check_table``).
        """
        from .limits import ServiceClosed

        work, ra_name, dec_name = self.check_table(table, ra_col, dec_col)
        parts = []
        for start in range(0, len(work), int(slice_rows)):
            if cancel is not None and cancel.is_set():
                raise ServiceClosed("the service shut down before the job finished")
            part = work[start:start + int(slice_rows)]
            self.add_columns(part, ra=ra_name, dec=dec_name)
            parts.append(part)
            if progress is not None:
                progress(start + len(part))
        if not parts:
            self.add_columns(work, ra=ra_name, dec=dec_name)
            return work
        out = parts[0] if len(parts) == 1 else vstack(parts, metadata_conflicts="silent")
        out.meta.update(parts[0].meta)
        return out

    def cutouts(self, ra, dec):
        """The cutouts at one position, with the cache.

        Fetched by `Mantis.get_cutouts <astro_mantis.MantisClass.get_cutouts>`.

        Parameters
        ----------
        ra, dec : float
            Degrees.

        Returns
        -------
        `~astro_mantis.MultiSurveyCutout`
        """
        from astropy.coordinates import SkyCoord

        from ..cutouts import Mantis

        return Mantis.get_cutouts(SkyCoord(ra * u.deg, dec * u.deg, frame="icrs"), cache=True,
                                  progress=False)
