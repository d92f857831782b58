"""GALEX (NUV, FUV) through the Legacy Surveys viewer layer ``galex``.

32 × 32 pixels of 1.5″. Pixels are in the GALEX intensity maps' counts per second;
AB zero points NUV 20.08, FUV 18.82 (Morrissey et al. 2007). PSF FWHM ≈ 5.3″ (NUV),
4.2″ (FUV). Coverage holes come back as all-zero cubes and count as "not covered".
"""
from astropy import units as u

from ..flags import MantisFlag

from .legacysurvey import LegacyViewerSurvey

__all__ = ["GalexSurvey", "survey"]


class GalexSurvey(LegacyViewerSurvey):
    """GALEX NUV and FUV cutouts (model channels 0–1)."""

    name = "galex"
    layer = "galex"
    bands = ("NUV", "FUV")
    pixscale = 1.5 * u.arcsec
    size = 32
    #: The viewer's galex layer is taken to serve the intensity maps' native counts/s,
    #: the unit the reference normalisation x/0.05 assumes (pinned by a remote_data test).
    unit = u.ct / u.s
    ab_zeropoints = {"NUV": 20.08, "FUV": 18.82}
    missing_flag = MantisFlag.GALEX_MISSING
    psf_fwhm = {"NUV": 5.3 * u.arcsec, "FUV": 4.2 * u.arcsec}
    #: The viewer's names of the bands (``BAND0 = 'n'``).
    native_bands = ("n", "f")
    filter_curves = {"NUV": "galex-nuv", "FUV": "galex-fuv"}
    band_aliases = {"n": "NUV", "nuv": "NUV", "f": "FUV", "fuv": "FUV"}

    def zeropoints(self, header=None):
        """AB zero points in band order (fixed for GALEX)."""
        return [self.ab_zeropoints[b] for b in self.bands]


survey = GalexSurvey()
