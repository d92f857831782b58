"""`MultiSurveyCutout`: every survey's cutout of one sky position, in one object."""
import enum
import json
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from ._version import __version__
from .flags import MantisFlag
from .surveys import SURVEYS
from .surveys.core import SurveyImage

__all__ = ["MultiSurveyCutout"]


# FetchStatus and StatusText are public names of `astro_mantis.fetch` (documented there);
# they are defined here, below the fetch engine, so that a cutout read back from a file
# (`MultiSurveyCutout.from_hdulist`) rebuilds its statuses.
class FetchStatus(enum.Enum):
    """What happened to one survey's cutout of one position.

    A cutout's ``status`` maps each survey to a `StatusText`: the documented text
    (this member's value; ``"failed"`` followed by ``": <reason>"``) carrying the
    member itself in ``kind``. `FetchStatus.of` gives the member of a status text,
    also of a plain string read back from a file.
    """

    FETCHED = "ok"
    CACHED = "cached"
    OUT_OF_FOOTPRINT = "out of footprint"
    FAILED = "failed"
    BAD_COORDINATE = "bad coordinate"
    NOT_FETCHED = "not fetched"

    def text(self, detail=None):
        """The status text of this outcome, with its ``detail`` (e.g. why it failed).

        Parameters
        ----------
        detail : str, optional
            What the text adds after ``": "``.

        Returns
        -------
        `StatusText`

        Examples
        --------
        >>> FetchStatus.FAILED.text("HTTP 503 (after 4 attempts)")
        'failed: HTTP 503 (after 4 attempts)'
        """
        return StatusText(self, detail)

    @classmethod
    def of(cls, text):
        """The `FetchStatus` of a status text (``"fetched"`` is read as `FETCHED`).

        A `StatusText` says it without parsing; a plain string (a status read back
        from a FITS header or a summary table) is read by its beginning.
        """
        kind = getattr(text, "kind", None)
        if isinstance(kind, cls):
            return kind
        text = str(text)
        if text in ("ok", "fetched"):
            return cls.FETCHED
        for member in (cls.CACHED, cls.OUT_OF_FOOTPRINT, cls.BAD_COORDINATE, cls.NOT_FETCHED):
            if text.startswith(member.value):
                return member
        return cls.FAILED


class StatusText(str):
    """The status of one survey's cutout: the documented text, carrying what it says.

    A `str` equal to the text users read (``"ok"``, ``"cached"``,
    ``"out of footprint"``, ``"failed: HTTP 503 (after 4 attempts)"``, ...), so it
    compares, prints and is saved as a plain string; code that needs the outcome reads
    ``kind`` and ``detail`` instead of parsing the text.

    Parameters
    ----------
    kind : `FetchStatus` or str
        The outcome (a member or its value).
    detail : str, optional
        What the text adds after ``": "`` (the reason of a failure).

    Attributes
    ----------
    kind : `FetchStatus`
        The outcome.
    detail : str or None
        The detail, without the outcome's name.
    """

    def __new__(cls, kind, detail=None):
        kind = FetchStatus(kind)
        detail = None if detail is None else str(detail)
        self = super().__new__(cls, kind.value if detail is None else f"{kind.value}: {detail}")
        self.kind, self.detail = kind, detail
        return self

    def __reduce__(self):
        return type(self), (self.kind, self.detail)

    @classmethod
    def _from_text(cls, text):
        """The `StatusText` of a status read back as a plain string (from a file)."""
        text = str(text)
        kind = FetchStatus.of(text)
        detail = text[len(kind.value) + 2:] if text.startswith(f"{kind.value}: ") else None
        status = cls(kind, detail)
        if status != text:  # a text of no standard form ("fetched"): kept as it was
            status = str.__new__(cls, text)
            status.kind, status.detail = kind, None
        return status


def _one_card(key, text):
    """``text`` shortened to fit one ``HIERARCH <key> = '...'`` card (ASCII, ``...`` at
    the end of a shortened one)."""
    text = text.encode("ascii", "replace").decode("ascii")
    room = 80 - len(f"HIERARCH {key} = ''")

    def width(t):
        return len(t) + t.count("'")  # quotes are doubled in a card

    if width(text) <= room:
        return text
    while text and width(text) + 3 > room:
        text = text[:-1]
    return text + "..."


class MultiSurveyCutout:
    """The cutouts of several surveys at one position.

    Parameters
    ----------
    coord : `~astropy.coordinates.SkyCoord`
        The position (scalar, ICRS).
    surveys : dict, optional
        Survey name → `~astro_mantis.surveys.SurveyImage` for each survey that delivered.
    missing : sequence of str, optional
        Surveys that were asked for but delivered nothing (not covered, or failed).
    flags : `~astro_mantis.flags.MantisFlag`, optional
        Flags of this position. Flags of the survey images are merged in.
    status : dict, optional
        Survey name → a short human-readable status (``"ok"``, ``"cached"``,
        ``"out of footprint"``, ``"failed: <reason>"``, ``"bad coordinate"``).

    Attributes
    ----------
    coord, surveys, missing, flags, status
        As above.
    """

    def __init__(self, coord, surveys=None, missing=(), flags=MantisFlag.NONE, status=None):
        self.coord = coord
        self.surveys = dict(surveys or {})
        self.missing = tuple(missing)
        flags = MantisFlag(flags)
        for image in self.surveys.values():
            flags |= image.flags
        self.flags = flags
        self.status = dict(status or {})

    @property
    def bands(self):
        """``(survey, band)`` pairs of the delivered images, in channel order."""
        return [(name, band) for name, image in self.surveys.items() for band in image.bands]

    def __getitem__(self, survey):
        return self.surveys[survey]

    def __contains__(self, survey):
        return survey in self.surveys

    def __repr__(self):
        pos = "bad coordinate" if not np.isfinite(self.coord.ra.deg) else (
            f"ra={self.coord.ra.deg:.6f} dec={self.coord.dec.deg:.6f}")
        return (f"<MultiSurveyCutout {pos} surveys={list(self.surveys)} "
                f"missing={list(self.missing)} flags={self.flags!r}>")

    # ------------------------------------------------------------------ FITS I/O
    def to_hdulist(self):
        """The cutout as a multi-extension FITS `~astropy.io.fits.HDUList`.

        The primary HDU holds the position (``RA``, ``DEC``, ICRS degrees; blank where
        the position is not a finite one, as for a ``BAD_COORDINATE`` cutout),
        ``FLAGS``, ``MISSING``, one ``HIERARCH STATUS <SURVEY>`` card per survey (the
        status, shortened with ``...`` where it does not fit one card) and
        ``STATUSES``, every status in full (a JSON object, in a long-string card
        continued over ``CONTINUE`` cards); then one image extension per band
        (EXTNAME ``SURVEY_BAND``) with its WCS, ``BUNIT`` and ``MAGZP``.
        """
        primary = fits.PrimaryHDU()
        hdr = primary.header
        for key, value, what in (("RA", self.coord.ra.deg, "right ascension"),
                                 ("DEC", self.coord.dec.deg, "declination")):
            value = float(np.ma.filled(np.ma.asarray(value, dtype=float), np.nan))
            hdr[key] = (value if np.isfinite(value) else None,
                        f"[deg] ICRS {what}" + ("" if np.isfinite(value) else " (none)"))
        hdr["FLAGS"] = (int(self.flags), "astro_mantis MantisFlag bits")
        hdr["SURVEYS"] = (",".join(self.surveys), "surveys present, in channel order")
        hdr["MISSING"] = (",".join(self.missing), "surveys requested but missing")
        for name, text in self.status.items():
            key = f"STATUS {name.upper()}"
            hdr[f"HIERARCH {key}"] = _one_card(key, str(text))
        hdr["STATUSES"] = json.dumps({name: str(text) for name, text in self.status.items()})
        hdr["CREATOR"] = f"astro_mantis {__version__}"
        return fits.HDUList([primary] + [h for img in self.surveys.values() for h in img.to_hdus()])

    def write(self, path, overwrite=False):
        """Write the cutout to a multi-extension FITS file (see `to_hdulist`).

        The file is written to a temporary name and renamed into place
        (`astro_mantis.atomic`), so an existing file is replaced whole or not at all.
        """
        from .atomic import atomic_path

        if Path(path).exists() and not overwrite:
            raise OSError(f"File {str(path)!r} already exists. If you mean to replace it "
                          "then use the argument \"overwrite=True\".")
        with atomic_path(path) as tmp:
            self.to_hdulist().writeto(tmp, checksum=True)

    @classmethod
    def from_hdulist(cls, hdul):
        """Rebuild a cutout from the HDUs written by `to_hdulist`.

        The statuses come back as `~astro_mantis.fetch.StatusText` (with ``kind`` and
        ``detail``), as the fetch engine made them.
        """
        hdr = hdul[0].header
        if "RA" not in hdr or "DEC" not in hdr:
            raise ValueError("not an astro_mantis cutout file: primary header lacks RA/DEC")
        ra, dec = (np.nan if not isinstance(hdr[k], (int, float)) else float(hdr[k])
                   for k in ("RA", "DEC"))  # blank (no valid position): NaN
        coord = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
        groups = {}
        for hdu in hdul[1:]:
            groups.setdefault(hdu.header["SURVEY"], []).append(hdu)
        order = [s for s in hdr.get("SURVEYS", "").split(",") if s in groups]
        order += [s for s in groups if s not in order]
        surveys = {name: SurveyImage.from_hdus(groups[name]) for name in order}
        missing = [s for s in hdr.get("MISSING", "").split(",") if s]
        status = {}
        for key in hdr:
            if key.startswith("STATUS "):
                status[key.split(" ", 1)[1].lower()] = hdr[key]
        try:  # the statuses in full (older files have only the cards)
            full = json.loads(hdr["STATUSES"]) if "STATUSES" in hdr else {}
        except ValueError:
            full = {}
        if isinstance(full, dict):
            status.update({str(k): str(v) for k, v in full.items()})
        status = {name: StatusText._from_text(text) for name, text in status.items()}
        return cls(coord, surveys, missing, MantisFlag(hdr.get("FLAGS", 0)), status)

    @classmethod
    def read(cls, path):
        """Read a cutout written by `write`, verifying the checksums it stored.

        Raises
        ------
        ValueError
            If an HDU's ``CHECKSUM`` or ``DATASUM`` does not match its content (the
            file was damaged after it was written); the message names the file.
        """
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, checksum=True) as hdul:
                for hdu in hdul:  # every HDU read (and verified) before it is used
                    hdu.data  # noqa: B018
                bad = [str(w.message).strip() for w in caught
                       if "verification failed" in str(w.message)]
                if bad:
                    raise ValueError(f"cutout file {str(path)!r} is damaged: "
                                     + " ".join(bad))
                cutout = cls.from_hdulist(hdul)
        for w in caught:  # give back the other warnings
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return cutout

    # ------------------------------------------------------------------ plotting
    def plot(self, fig=None, surveys=None, stretch="asinh", percent=99.5):
        """Show every band in one row of panels, labelled with survey and band.

        Surveys that are missing get empty panels saying so, so the default three
        surveys always give the nine panels of the model's channels.

        Parameters
        ----------
        fig : `matplotlib.figure.Figure`, optional
            Figure to draw into; a new one is made otherwise.
        surveys : sequence of str, optional
            Surveys to show (default: the delivered and missing ones, channel order).
        stretch : str
            Stretch passed to `astropy.visualization.simple_norm`.
        percent : float
            Percentile clipping passed to `astropy.visualization.simple_norm`.

        Returns
        -------
        `matplotlib.figure.Figure`
        """
        from .plotting import image_panels

        if surveys is None:
            names = list(self.surveys) + [m for m in self.missing if m not in self.surveys]
            rank = {n: i for i, n in enumerate(SURVEYS)}
            surveys = sorted(names, key=lambda n: rank.get(n, len(rank)))
        panels = []
        for name in surveys:
            message = self.status.get(name, "missing")
            if name in self.surveys:
                img = self.surveys[name]
                panels += [(f"{name}\n{band}", img.data[i], message)
                           for i, band in enumerate(img.bands)]
            else:
                bands = SURVEYS[name].bands if name in SURVEYS else ("?",)
                panels += [(f"{name}\n{band}", None, message) for band in bands]
        return image_panels(panels, fig=fig, stretch=stretch, percent=percent,
                            title=repr(self).strip("<>").split(" surveys=")[0])
