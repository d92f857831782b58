# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Atomic writes: a failed write never leaves a torn file or destroys the earlier one."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.table import Table

from astro_mantis.atomic import TEMP_SUFFIX, atomic_open, atomic_path


def _leftovers(directory):
    return [p for p in directory.iterdir() if TEMP_SUFFIX in p.name]


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "t.ecsv"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".ecsv" and not tmp.exists()
        Table({"a": [1]}).write(tmp)
    assert Table.read(target)["a"][0] == 1
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half a tab")
            raise RuntimeError("boom")
    assert Table.read(target)["a"][0] == 1  # the earlier file is untouched
    assert not _leftovers(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_path(tmp_path / "never.txt"):
            pass
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with atomic_path(tmp_path / "no" / "dir.txt"):
            pass
    with pytest.raises(IsADirectoryError):
        with atomic_path(tmp_path):
            pass


def test_atomic_open_and_interrupt(tmp_path):
    target = tmp_path / "x.txt"
    with atomic_open(target, "w") as fh:
        fh.write("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target, "w") as fh:
            fh.write("new, half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and not _leftovers(tmp_path)
    with pytest.raises(ValueError, match="must contain 'w'"):
        with atomic_open(target, "a"):
            pass


def test_file_size_limit_keeps_earlier_results(tmp_path):
    """The issue's case: the final write fails (ulimit -f); the earlier table survives."""
    from astro_mantis.tableio import write_table

    out = tmp_path / "p5.fits"
    small = Table({"z_mean": np.arange(10.0)})
    write_table(small, out)
    before = out.read_bytes()
    script = textwrap.dedent(f"""
        import resource, numpy as np
        from astropy.table import Table
        from astro_mantis.tableio import write_table
        from astro_mantis.multicutout import MultiSurveyCutout
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        big = Table({{"z_pdf": np.ones((200, 400), np.float32)}})
        try:
            write_table(big, {str(out)!r}, overwrite=True)
        except OSError as exc:
            print("failed:", exc.errno)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert "failed:" in res.stdout, res.stderr
    assert out.read_bytes() == before  # neither truncated nor replaced
    assert Table.read(out)["z_mean"].tolist() == list(range(10))
    assert not _leftovers(tmp_path)


def test_cutout_write_is_atomic(tmp_path):
    from astropy.coordinates import SkyCoord

    from astro_mantis import MultiSurveyCutout

    cut = MultiSurveyCutout(SkyCoord(1, 2, unit="deg"), {}, ["galex"], 1, {"galex": "failed"})
    path = tmp_path / "c.fits"
    cut.write(path)
    with pytest.raises(OSError, match="already exists"):
        cut.write(path)
    cut.write(path, overwrite=True)
    assert list(MultiSurveyCutout.read(path).missing) == ["galex"]
    assert not _leftovers(tmp_path)


def test_evaluation_files_are_written_atomically(tmp_path, monkeypatch):
    """evaluation.json and evaluation.rst go through atomic_open (flushed to disk, renamed
    into place); when a text cannot be built, neither earlier file is touched."""
    import os

    from astro_mantis.training.evaluation import Evaluation

    class Stub(Evaluation):
        rst = "Model ``m``: ± 0.01\n"

        def as_dict(self):
            return {"model": self.model, "n": 3}

        def to_rst(self, digits=4):
            if self.rst is None:
                raise RuntimeError("no table")
            return self.rst

    synced, fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), fsync(fd))[1])
    ev = Stub(model="m", data_dir="d", split="test", overall={}, pdf_table=None,
              point_tables={}, pdf=None, z=np.zeros(0))
    paths = ev.write(tmp_path)
    assert len(synced) == 2
    assert paths["rst"].read_text(encoding="utf-8") == Stub.rst
    before = {k: p.read_bytes() for k, p in paths.items()}
    ev.model, ev.rst = "another", None
    with pytest.raises(RuntimeError, match="no table"):
        ev.write(tmp_path)
    assert {k: p.read_bytes() for k, p in paths.items()} == before
    assert not _leftovers(tmp_path)


def test_a_write_removes_the_stale_temporaries_of_its_target(tmp_path):
    """A writer killed before its rename (SIGKILL) leaves a temporary file that nothing
    removed (a 10 MB ``.k1.xxxx.astro_mantis-tmp.ecsv`` stayed): the next write of the
    same target removes it once it is older than STALE_SECONDS; a fresh one may be a
    live writer's and stays, and so do other targets' (swept by their own writes)."""
    import os
    import time

    target = tmp_path / "k1.ecsv"
    old = tmp_path / f".k1.abcd1234{TEMP_SUFFIX}.ecsv"
    fresh = tmp_path / f".k1.efgh5678{TEMP_SUFFIX}.ecsv"
    other = tmp_path / f".k2.ijkl9012{TEMP_SUFFIX}.ecsv"
    for f in (old, fresh, other):
        f.write_text("torn")
    past = time.time() - 2 * 3600
    for f in (old, other):
        os.utime(f, (past, past))
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert not old.exists(), "the stale temporary file of the target was left"
    assert fresh.exists() and other.exists()
    # the sweep itself, shared with the cutout cache
    from astro_mantis.atomic import STALE_SECONDS, remove_stale_temporaries

    assert remove_stale_temporaries(tmp_path, stem="k9") == 0
    assert remove_stale_temporaries(tmp_path) == 1 and not other.exists()  # every target
    assert remove_stale_temporaries(tmp_path, older_than=0) == 1 and not fresh.exists()
    assert target.exists() and STALE_SECONDS == 3600.0
    # a stem with glob characters is taken literally
    odd = tmp_path / f".a[1].x{TEMP_SUFFIX}.txt"
    odd.write_text("torn")
    os.utime(odd, (past, past))
    with atomic_path(tmp_path / "a[1].txt") as tmp:
        tmp.write_text("x")
    assert not odd.exists()
