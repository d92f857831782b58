# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Deterministic, atomic ``.npz`` writing (shared by the dataset and sample-sky writers).

`numpy.savez` stamps every member with the current time, so two runs never give
identical bytes; `write_npz` writes the same ``.npz`` layout (a zip archive of
``.npy`` members, readable with `numpy.load`) with fixed timestamps, through a
temporary file that is renamed into place, so a reader never sees a partial file.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["write_npz", "json_array", "read_json_member"]

_EPOCH = (1980, 1, 1, 0, 0, 0)
_COMPRESSION = {"stored": zipfile.ZIP_STORED, "deflate": zipfile.ZIP_DEFLATED,
                "bzip2": zipfile.ZIP_BZIP2}


def json_array(obj):
    """A JSON document as a 0-d unicode array (loads without ``allow_pickle``)."""
    return np.array(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def read_json_member(npz, name):
    """Decode a member written by `json_array`."""
    return json.loads(str(npz[name][()]))


def write_npz(path, arrays, compression="stored"):
    """Write arrays to an ``.npz`` file, byte-reproducibly and atomically.

    Parameters
    ----------
    path : str or path-like
        Destination; its directory must exist.
    arrays : dict
        Member name → array (written in the dict's order). Object arrays are
        refused: the file must load with ``allow_pickle=False``.
    compression : {"stored", "deflate", "bzip2"}, optional
        Zip compression of the members (all readable by `numpy.load`).

    Returns
    -------
    int
        Size of the written file in bytes.
    """
    path = os.fspath(path)
    method = _COMPRESSION[compression]
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            level = None if method == zipfile.ZIP_STORED else 9
            with zipfile.ZipFile(fh, "w", compression=method, allowZip64=True,
                                 compresslevel=level) as zf:
                for name, value in arrays.items():
                    value = np.asanyarray(value)
                    if value.dtype.hasobject:
                        raise TypeError(f"member {name!r} has object dtype; not writable")
                    info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
                    info.compress_type = method
                    info.external_attr = 0o644 << 16
                    # streamed member by member: no second copy of a large array
                    with zf.open(info, mode="w", force_zip64=True) as member:
                        np.lib.format.write_array(member, value, allow_pickle=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return os.path.getsize(path)
