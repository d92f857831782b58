# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Reading and writing tables with redshift columns, in every format the CLI offers.

`write_table` writes atomically (`astro_mantis.atomic`): a failed write — a full
disk, a file-size limit, an interrupt — leaves the earlier file as it was. Each
format keeps the provenance metadata (``z_model``, ``z_sha256``, ...):

==========================  ==============================================================
file name                   written as
==========================  ==============================================================
``.fits``, ``.fit``         FITS binary table; metadata in the header (keys come back
                            upper-case: `~astro_mantis.table.run_settings` reads either)
``.ecsv``                   ECSV
``.csv``                    ECSV with commas: a CSV file whose ``#`` header lines hold
                            the metadata; the 400-bin ``z_pdf`` is one JSON list per cell
``.h5``, ``.hdf5``          HDF5, table at ``path="data"``, metadata serialised
``.parquet``                Parquet
``.vot``, ``.xml``          VOTable; metadata as ``INFO`` elements of the table, each
                            with its type in ``utype`` (which `read_table` reads back,
                            as written: ``"0123"`` stays a string; astropy's own
                            reader skips them); lists and dictionaries (FITS
                            ``HISTORY``, ``spec_match``) as JSON, other values as
                            astropy's YAML, as ECSV holds them
==========================  ==============================================================

Metadata that astropy's YAML cannot represent (an arbitrary object) is refused with an
`OutputError` naming its key, in every format that keeps metadata as YAML (ECSV, CSV,
HDF5, Parquet) and in VOTable. `read_table` reads zero-row ECSV and CSV files back,
multidimensional columns included (astropy's reader fails on them: "shape mismatch
between value and column specifier").

`check_writable` tries all of this on a two-row prototype before a long job starts,
so an unusable output is refused before any fetching or inference.
"""
import os
import warnings
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table

from .atomic import atomic_path

__all__ = ["write_table", "read_table", "table_format", "check_writable", "OutputError",
           "FORMATS"]

#: File name suffix → (astropy format, extra keyword arguments of Table.write).
FORMATS = {
    ".fits": ("fits", {}), ".fit": ("fits", {}), ".fits.gz": ("fits", {}),
    ".ecsv": ("ascii.ecsv", {}),
    ".csv": ("ascii.ecsv", {"delimiter": ","}),
    ".h5": ("hdf5", {"path": "data", "serialize_meta": True}),
    ".hdf5": ("hdf5", {"path": "data", "serialize_meta": True}),
    ".he5": ("hdf5", {"path": "data", "serialize_meta": True}),
    ".parquet": ("parquet", {}),
    ".vot": ("votable", {}), ".xml": ("votable", {}), ".votable": ("votable", {}),
}


#: Formats whose writers keep the metadata as astropy's YAML.
_YAML_META_FORMATS = ("ascii.ecsv", "hdf5", "parquet")


class OutputError(ValueError):
    """The output cannot be written (missing directory, a directory, unknown format,
    data or metadata the format cannot hold)."""


def table_format(path, format=None):
    """The astropy format and write arguments for an output file.

    Parameters
    ----------
    path : str or path-like
        Output file; its suffix chooses the format (see the module docstring).
    format : str, optional
        An astropy format name that overrides the suffix (``"fits"``, ``"votable"``,
        ``"ascii.ecsv"``, ``"hdf5"``, ``"parquet"``, ...).

    Returns
    -------
    format : str or None
        None when neither the suffix nor ``format`` says (astropy then guesses).
    kwargs : dict
        Extra arguments of `astropy.table.Table.write`.
    """
    name = Path(path).name.lower()
    if format:
        fmt = str(format)
        for _, (f, kw) in FORMATS.items():
            if f == fmt and fmt != "ascii.ecsv":
                return fmt, dict(kw)
        return fmt, {}
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            fmt, kw = FORMATS[suffix]
            return fmt, dict(kw)
    return None, {}


#: ``utype`` prefix of the VOTable INFO elements holding the metadata: the rest is the
#: Python type of the value (one of `_INFO_TYPES`), so that it comes back as it was.
_INFO_UTYPE = "astro_mantis:"
_INFO_TYPES = {"bool": lambda text: text == "True", "int": int, "float": float,
               "str": str}


def _info_type(value):
    """The `_INFO_TYPES` name of a metadata value a VOTable INFO holds, or None."""
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, str):
        return "str"
    return None


#: XML normalises these characters in an attribute (where an INFO holds its value) to
#: spaces: text holding them is written as JSON, which escapes them.
_XML_ATTRIBUTE_WHITESPACE = ("\n", "\r", "\t")


def _json_exact(value):
    """``value`` as JSON text when JSON gives exactly it back (lists of text, nested
    dictionaries with text keys ...), else None."""
    import json

    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text if _same(json.loads(text), value) else None


def _same(a, b):
    """Equality that also tells a list from a tuple and 1 from 1.0 or True, recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _yaml_text(key, value, fmt):
    """The ``meta`` entry ``key: value`` in astropy's YAML, as the ECSV header, HDF5 and
    Parquet writers give it; an `OutputError` naming ``key`` when YAML cannot represent
    the value."""
    from astropy.table.meta import get_yaml_from_header

    try:
        return "\n".join(get_yaml_from_header({"cols": [], "meta": {key: value}}))
    except Exception as exc:  # yaml's RepresenterError, or an object's own failure
        raise OutputError(f"metadata {str(key)!r} (of type {type(value).__name__}) cannot be "
                          f"written as {fmt}: {exc}. Remove it from table.meta, or store it "
                          "as text") from None


def _yaml_value(text):
    """The value of a ``meta`` entry written by `_yaml_text`."""
    from astropy.table.meta import get_header_from_yaml

    (value,) = get_header_from_yaml(text.splitlines())["meta"].values()
    return value


def _info_text(key, value):
    """``(text, kind)`` of a metadata value for a VOTable INFO: a scalar as its text
    with its type (`_INFO_TYPES`); text XML would alter, lists and dictionaries as
    JSON (``"json"``); anything else as astropy's YAML (``"yaml"``, the text held as a
    JSON string so that no line break meets XML)."""
    import json

    kind = _info_type(value)
    if kind is not None and not (kind == "str" and any(c in value for c in
                                                       _XML_ATTRIBUTE_WHITESPACE)):
        return str(value), kind
    text = _json_exact(value)
    if text is not None:
        return text, "json"
    return json.dumps(_yaml_text(key, value, "VOTable")), "yaml"


def _check_yaml_meta(table, fmt):
    """Refuse, naming the key, metadata that astropy's YAML (the ECSV header, the HDF5
    and Parquet metadata) cannot represent: astropy would raise a bare RepresenterError
    in the middle of the write."""
    from astropy.table.meta import get_yaml_from_header

    try:
        get_yaml_from_header({"cols": [], "meta": table.meta})
    except Exception:  # find the key
        for key, value in table.meta.items():
            _yaml_text(key, value, fmt)
        raise


def _write_votable(table, path):
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info

    plain = table.copy(copy_data=False)
    meta = dict(plain.meta)
    plain.meta.clear()
    vot = from_table(plain)
    vtab = vot.get_first_table()
    # the file's version (1.2 or later) for the new elements: without it astropy leaves
    # out their utype (added to INFO in VOTable 1.2)
    config = getattr(vot, "_get_version_checks", lambda: {"version_1_2_or_later": True})()
    for key, value in meta.items():
        text, kind = _info_text(key, value)
        # the type in utype: "0123" stays a string, 1.0 a float, a list a list
        vtab.infos.append(Info(name=str(key), value=text, utype=_INFO_UTYPE + kind,
                               config=config))
    vot.to_xml(str(path))


def _meta_from_infos(path):
    """Table-level INFO elements of a VOTable as a dict, each value of the type written."""
    from astropy.io.votable import parse

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vtab = parse(str(path)).get_first_table()
    return {info.name: _info_value(info) for info in vtab.infos}


def _info_value(info):
    """The value of an INFO element: of the type its utype records (`_write_votable`);
    guessed from the text (`_parse_scalar`) where none is recorded (older files, other
    writers)."""
    utype, text = info.utype or "", info.value
    kind = utype[len(_INFO_UTYPE):] if utype.startswith(_INFO_UTYPE) else None
    if kind in ("json", "yaml"):
        import json

        value = json.loads(text)
        return _yaml_value(value) if kind == "yaml" else value
    if kind in _INFO_TYPES:
        return _INFO_TYPES[kind]("" if text is None else text)
    return _parse_scalar(text)


def _parse_scalar(text):
    """A value from its text, type guessed (bool, int, float, else the text): how
    files written without the types recorded are read."""
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text


def write_table(table, path, format=None, overwrite=False):
    """Write a table with redshift columns, atomically, keeping its metadata.

    Parameters
    ----------
    table : `~astropy.table.Table`
    path : str or path-like
        Output file (format from its name, see the module docstring).
    format : str, optional
        Astropy format name overriding the file name.
    overwrite : bool
        Replace an existing file (it is replaced whole or not at all).

    Raises
    ------
    OSError
        If the file exists and ``overwrite`` is False, or the write fails (the old
        file is then untouched).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    fmt, kwargs = table_format(path, format)
    if fmt in _YAML_META_FORMATS:
        _check_yaml_meta(table, fmt)
    with atomic_path(path) as tmp:
        if fmt == "votable":
            _write_votable(table, tmp)
        else:
            table.write(tmp, format=fmt, **kwargs)


def read_table(path, format=None):
    """Read a table written by `write_table` (VOTable ``INFO`` metadata included).

    Parameters
    ----------
    path : str or path-like
    format : str, optional
        Astropy format name overriding the file name.

    Returns
    -------
    `~astropy.table.Table`
    """
    fmt, kwargs = table_format(path, format)
    read_kwargs = {"path": kwargs["path"]} if "path" in kwargs else {}
    if fmt == "ascii.ecsv" and kwargs.get("delimiter"):
        read_kwargs["delimiter"] = kwargs["delimiter"]
    try:
        table = Table.read(path, format=fmt, **read_kwargs)
    except ValueError as exc:
        if fmt != "ascii.ecsv" or "shape mismatch" not in str(exc):
            raise
        table = _read_empty_ecsv(path, read_kwargs, exc)
    if fmt == "votable":
        table.meta.update(_meta_from_infos(path))
    return table


def _read_empty_ecsv(path, read_kwargs, error):
    """A zero-row ECSV table with multidimensional columns (``z_pdf``), which astropy's
    reader cannot read (it takes the shape from the rows, of which there are none).

    The file is read with one row of empty (masked) cells added after its header,
    which gives every column its type, shape, unit and metadata, and that row is
    dropped.
    """
    import tempfile

    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines()
    body = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if len(body) != 1:  # a header line and rows: the error is another one
        raise error
    names, delimiter = _ecsv_columns(lines)
    filler = (read_kwargs.get("delimiter") or delimiter).join(['""'] * len(names))
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "empty.ecsv"
        probe.write_text(text.rstrip("\n") + "\n" + filler + "\n", encoding="utf-8")
        try:
            table = Table.read(probe, format="ascii.ecsv", **read_kwargs)
        except Exception:
            raise error from None
    return table[:0]


def _ecsv_columns(lines):
    """The column names of an ECSV header (its ``datatype`` entries) and its delimiter."""
    from astropy.table.meta import get_header_from_yaml

    header = [line.lstrip()[2:] if line.lstrip().startswith("# ") else line.lstrip()[1:]
              for line in lines if line.lstrip().startswith("#")]
    header = [line for line in header if not line.startswith("%ECSV")]
    header = get_header_from_yaml(header)
    return [col["name"] for col in header["datatype"]], header.get("delimiter", " ")


def _prototype(table, columns, meta):
    """Two rows of ``table`` plus masked stand-ins of the new columns and the meta."""
    proto = table[:2].copy() if len(table) else table.copy()
    n = len(proto)
    for name, (shape, dtype) in columns.items():
        data = np.zeros((n,) + tuple(shape), dtype=dtype)
        col = MaskedColumn(data, name=name, mask=np.ones(data.shape, bool) if n else None)
        if name in proto.colnames:
            proto.replace_column(name, col)
        else:
            proto.add_column(col)
    proto.meta.update(meta)
    return proto


def check_writable(path, table, columns=None, meta=None, format=None, overwrite=False,
                   existing_ok=False):
    """Check before a long job that its output can be written, by writing a prototype.

    A two-row prototype — the first rows of ``table`` plus stand-ins of the columns
    and metadata to be added — is written (and removed) in the output's directory
    with `write_table`, so a missing directory, a path that is a directory, an
    unknown format, columns the format cannot hold (a 400-bin PDF in plain CSV) and
    metadata it would drop are all found before any work starts.

    Parameters
    ----------
    path : str or path-like
        The output file.
    table : `~astropy.table.Table`
        The table that will be written (its first rows are used).
    columns : dict, optional
        Column name → (per-row shape, dtype) of the columns to be added.
    meta : dict, optional
        Metadata entries to be added.
    format : str, optional
        Astropy format name overriding the file name.
    overwrite, existing_ok : bool
        Whether an existing ``path`` may be replaced (``existing_ok``: it is the
        file being resumed).

    Raises
    ------
    OutputError
        Saying what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output {str(path)!r} is a directory; give a file name, e.g. "
                          f"{str(path / 'photoz.fits')!r}")
    if not path.parent.is_dir():
        raise OutputError(f"the directory of the output, {str(path.parent)!r}, does not exist")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"cannot write into directory {str(path.parent)!r} (permission)")
    if path.exists() and not (overwrite or existing_ok):
        raise OutputError(f"{str(path)!r} exists: pass --overwrite to replace it or --resume "
                          "to complete it")
    fmt, _ = table_format(path, format)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise OutputError(f"cannot tell the format of {str(path)!r} from its name; use one of "
                          f"{known} or give --output-format")
    proto = _prototype(table, columns or {}, meta or {})
    probe = path.with_name(f".{path.name}.probe")
    probe = probe.with_name(probe.name + "".join(path.suffixes))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            write_table(proto, probe, format=format, overwrite=True)
            back = read_table(probe, format=format)
    except Exception as exc:
        raise OutputError(f"cannot write {str(path)!r} as {fmt}: {exc}") from None
    finally:
        probe.unlink(missing_ok=True)
    dropped = [str(w.message) for w in caught if "meta" in str(w.message).lower()
               or "header" in str(w.message).lower() or "cannot be" in str(w.message)]
    kept = {str(b).lower() for b in back.meta}
    lost = [str(k) for k in proto.meta if str(k).lower() not in kept]
    if dropped or lost:
        what = "; ".join(dropped[:3]) or f"metadata {', '.join(lost)}"
        raise OutputError(f"{fmt} output {str(path)!r} would lose information ({what}); "
                          "write .ecsv, .h5 or .parquet instead, which keep any metadata")
