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
                            reader skips them)
==========================  ==============================================================

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
        kind = _info_type(value)
        if kind is not None:  # the type in utype: "0123" stays a string, 1.0 a float
            vtab.infos.append(Info(name=str(key), value=str(value),
                                   utype=_INFO_UTYPE + kind, config=config))
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
    table = Table.read(path, format=fmt, **read_kwargs)
    if fmt == "votable":
        table.meta.update(_meta_from_infos(path))
    return table


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
    lost = [k for k in (meta or {}) if k.lower() not in {str(b).lower() for b in back.meta}]
    if dropped or lost:
        what = "; ".join(dropped[:3]) or f"metadata {', '.join(lost)}"
        raise OutputError(f"{fmt} output {str(path)!r} would lose information ({what}); "
                          "write .ecsv, .h5 or .parquet instead, which keep any metadata")
