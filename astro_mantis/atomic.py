# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

The package's result files go through `atomic_path` (or `atomic_open`): tables
(`astro_mantis.tableio`), cutout files, training shards and their manifests, model
weights and cards, checkpoints, evaluation reports, and every figure written to a
path by `astro_mantis.plotting.save_figure` (those of ``astro-mantis plot``, of the
demo, of training and the ``--figure`` of ``astro-mantis explain``). The writer
writes a temporary file in the *same directory* as the target (so the final rename
never crosses a file system), the data are flushed to disk, and `os.replace` renames
the file into place. If the writer fails — a full disk, a file-size limit, a format
that cannot hold the data, an interrupt — the temporary file is removed and the
target is untouched. Each writer has a temporary file of its own, so concurrent
writers of one file do not collide (the last rename wins), and a reader that holds
the old file open, or memory-mapped, keeps reading the old data.

A writer that is killed outright (SIGKILL, a power cut) cannot remove its temporary
file. `atomic_path` removes those of its own target (``.{stem}.*`` with `TEMP_SUFFIX`
in the name) that are older than `STALE_SECONDS` before it writes: a live writer's
temporary file is seconds old, so it is left alone. `remove_stale_temporaries` is the
sweep itself; the cutout cache runs it once per folder and process
(`astro_mantis.fetch.CutoutCache`).

Files that are simply rebuilt when lost are replaced atomically too, but not flushed
to disk (``fsync=False``): the cutout cache, the local tile index, the web service's
job states, the fused training-data cache of `astro_mantis.training.ShardDataset`
(which, after a machine crash, checks that an entry's files are whole before reusing
it), the SDSS template-fit cache of `astro_mantis.simulate.photometry`, the mock-sky
FITS tiles of `astro_mantis.simulate.tiles.write_tiles` and the mock spAll files of
`astro_mantis.testing.write_spall`.

Only the lines appended to a spectral log (`astro_mantis.explain.SpectralMonitor`)
are written directly: an append cannot be renamed into place, and a crash can at worst
leave a last line cut short (a log logged again from an earlier epoch is rewritten
whole, atomically). Figures written to a file object, and writes to in-memory
buffers, are the caller's business.

>>> from astro_mantis.atomic import atomic_path
>>> with atomic_path("out.txt") as tmp:  # doctest: +SKIP
...     tmp.write_text("all or nothing")
"""
import contextlib
import glob
import os
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_path", "atomic_open", "remove_stale_temporaries", "TEMP_SUFFIX",
           "STALE_SECONDS"]

#: Suffix of the temporary files (they start with the target's name and a dot).
TEMP_SUFFIX = ".astro_mantis-tmp"

#: Age in seconds after which a temporary file is taken to be abandoned by a killed
#: writer (a live writer's is seconds old).
STALE_SECONDS = 3600.0


def remove_stale_temporaries(directory, stem=None, older_than=STALE_SECONDS):
    """Delete the temporary files that killed writers left in ``directory``.

    Parameters
    ----------
    directory : str or path-like
        The folder to sweep (not its subfolders).
    stem : str, optional
        Only the temporary files of targets with this stem (``.{stem}.*``, as
        `atomic_path` names them for ``{stem}.ext``); default: every temporary file
        of the folder.
    older_than : float
        Age in seconds (from the file's last modification) above which a temporary
        file is deleted; younger ones may belong to a live writer and are kept.

    Returns
    -------
    int
        The number of files deleted. Files that vanish meanwhile, or cannot be
        deleted, are skipped.
    """
    prefix = "." if stem is None else f".{glob.escape(str(stem))}."
    now = time.time()
    removed = 0
    for tmp in Path(directory).glob(f"{prefix}*{TEMP_SUFFIX}*"):
        try:
            if now - tmp.lstat().st_mtime > older_than and not tmp.is_dir():
                tmp.unlink()
                removed += 1
        except OSError:  # another process removed or renamed it meanwhile
            continue
    return removed


def _fsync_path(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. a platform without O_RDONLY on dirs
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse fsync
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, fsync=True, sweep=True):
    """Yield a temporary path to write; rename it onto ``path`` when the block succeeds.

    The temporary file lies in ``path``'s directory and keeps ``path``'s suffix (so
    writers that pick a format from the file name, such as
    `astropy.table.Table.write` or `matplotlib.figure.Figure.savefig`, pick the
    right one). It does not exist when the block starts.

    Parameters
    ----------
    path : str or path-like
        The file to (re)place. Its directory must exist.
    fsync : bool
        Flush the new file to disk before the rename (default), so that a power cut
        cannot leave an empty file in place of the old one.
    sweep : bool
        First delete the temporary files of ``path`` that killed writers left (older
        than `STALE_SECONDS`; `remove_stale_temporaries`). One listing of the
        directory; writers of many small files into large folders (the cutout cache)
        sweep once per folder themselves and pass False.

    Yields
    ------
    tmp : `pathlib.Path`
        Where to write.

    Raises
    ------
    FileNotFoundError
        If the target's directory does not exist.
    IsADirectoryError
        If ``path`` is a directory.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory, not a file")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"directory {str(parent)!r} of {str(path)!r} does not exist")
    if sweep:
        remove_stale_temporaries(parent, stem=path.stem)
    fd, name = tempfile.mkstemp(dir=parent, prefix=f".{path.stem}.",
                                suffix=TEMP_SUFFIX + "".join(path.suffixes))
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # writers that refuse to overwrite (overwrite=False) must find no file
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written for {str(path)!r}")
        if fsync:
            _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="wb", fsync=True, sweep=True, **kwargs):
    """Open a temporary file for writing; rename it onto ``path`` when the block succeeds.

    Parameters
    ----------
    path : str or path-like
        The file to (re)place.
    mode : str
        A write mode of ``open`` (``"w"`` or ``"wb"``).
    fsync : bool
        Flush the file to disk before the rename.
    sweep : bool
        Delete the temporary files of ``path`` that killed writers left (see
        `atomic_path`).
    **kwargs
        Passed to ``open`` (e.g. ``encoding``).

    Yields
    ------
    fh : file object
    """
    if "w" not in mode:
        raise ValueError(f"atomic_open writes whole files; mode must contain 'w', got {mode!r}")
    with atomic_path(path, fsync=False, sweep=sweep) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
