"""Surveys served by the Legacy Surveys viewer's ``fits-cutout`` endpoint.

``GET {legacysurvey_url}/fits-cutout?ra=&dec=&size=&pixscale=&layer=`` returns one FITS
file whose primary HDU holds a cube (nbands, size, size) on a TAN grid centred on the
position. The viewer writes ``BANDS`` and ``BAND0``, ``BAND1`` ... keywords naming each
plane; they are trusted over the default order. Where a layer has no data the viewer
sends either a header-only file with ``OVERLAP = F`` or an all-zero cube; both mean
"not covered".
"""
import numpy as np
from astropy import units as u

from ..exceptions import InvalidResponseError
from ..flags import MantisFlag
from .core import Request, Survey, SurveyImage, read_primary_image

__all__ = ["LegacyViewerSurvey"]


class LegacyViewerSurvey(Survey):
    """A survey fetched from the Legacy Surveys viewer (one request per position).

    Subclasses set ``layer``, ``bands`` and `band_aliases` (header band name → band).
    """

    url_config = "legacysurvey_url"
    band_aliases = {}

    def _band_name(self, value):
        key = str(value).strip().lower()
        if key in self.band_aliases:
            return self.band_aliases[key]
        for band in self.bands:
            if band.lower() == key:
                return band
        raise InvalidResponseError(
            f"{self.name}: unknown band {value!r} in header (expected one of {self.bands})"
        )

    def image_requests(self, ra, dec, listing=None, size=None, pixscale=None):
        """One ``fits-cutout`` GET for all bands at (ra, dec)."""
        size = int(size or self.size)
        pixscale = u.Quantity(self.pixscale if pixscale is None else pixscale,
                              u.arcsec).to_value(u.arcsec)
        params = {"ra": f"{ra:.7f}", "dec": f"{dec:.7f}", "size": size,
                  "pixscale": f"{pixscale:g}", "layer": self.layer}
        return [Request("GET", f"{self.base_url}/fits-cutout", params)]

    def plane_order(self, header, nplanes):
        """Index of each of ``bands`` among the cube's planes, from ``BANDn`` keywords."""
        names = [header.get(f"BAND{i}") for i in range(nplanes)]
        if any(n is None for n in names):
            if nplanes != len(self.bands):
                raise InvalidResponseError(
                    f"{self.name}: {nplanes} planes without BANDn keywords; "
                    f"expected {len(self.bands)}")
            return list(range(nplanes))
        names = [self._band_name(n) for n in names]
        missing = [b for b in self.bands if b not in names]
        if missing:
            raise InvalidResponseError(f"{self.name}: response lacks band(s) {missing}")
        return [names.index(b) for b in self.bands]

    def read(self, contents, requests, ra, dec, size=None, pixscale=None):
        """Parse the ``fits-cutout`` response; None if the position is not covered."""
        size = int(size or self.size)
        (content,) = contents
        header, data = read_primary_image(
            content, f"{self.name} fits-cutout at ({ra:.5f}, {dec:.5f})")
        if data is None:
            if header.get("OVERLAP", True) is False:
                return None
            raise InvalidResponseError(f"{self.name}: FITS response has no image data")
        shape = data.shape
        if data.ndim == 2:
            data = data[np.newaxis]
        if data.ndim != 3 or data.shape[1:] != (size, size):
            raise InvalidResponseError(
                f"{self.name}: image shape {shape}, expected "
                f"({len(self.bands)}, {size}, {size})")
        order = self.plane_order(header, data.shape[0])
        data = data[order]
        if not np.any(data[np.isfinite(data)]):
            return None  # all-zero (or all-NaN) cube: a coverage hole
        meta = {"LAYER": self.layer}
        for key in ("SURVEY", "VERSION"):
            if key in header:
                meta["SRC" + key[:5]] = str(header[key])
        # the viewer picks its input images band by band: a band observed nowhere near
        # (GALEX FUV where only NUV was taken) comes as an all-zero plane beside data
        empty = [band for band, plane in zip(self.bands, data)
                 if not np.any(plane[np.isfinite(plane)])]
        if empty:
            meta["EMPTYBND"] = ",".join(str(b) for b in empty)
        return SurveyImage(self.name, data, header, self.unit, self.bands,
                           zeropoints=self.zeropoints(header), meta=meta,
                           flags=MantisFlag.BAND_MISSING if empty else MantisFlag.NONE)
