"""unWISE (W1, W2) through the Legacy Surveys viewer layer ``unwise-neo7``.

32 × 32 pixels of 2.75″. Pixels are Vega nanomaggies (zero point 22.5 Vega);
AB = Vega + 2.699 (W1), + 3.339 (W2). PSF FWHM ≈ 6.1″ (W1), 6.4″ (W2).
"""
from astropy import units as u

from ..flags import MantisFlag

from .legacysurvey import LegacyViewerSurvey

__all__ = ["UnwiseSurvey", "survey", "nanomaggy_vega"]

#: unWISE's flux unit: a Vega-based nanomaggy (Vega magnitude 22.5 - 2.5 log10(flux)).
#: It is *not* astropy's ``nanomaggy``, which is AB-based.
nanomaggy_vega = u.def_unit(
    "nanomaggy_vega",
    doc="Vega-based nanomaggy of unWISE: m_Vega = 22.5 - 2.5 log10(flux)",
)
u.add_enabled_units([nanomaggy_vega])


class UnwiseSurvey(LegacyViewerSurvey):
    """unWISE W1 and W2 cutouts (model channels 7–8)."""

    name = "unwise"
    layer = "unwise-neo7"
    bands = ("W1", "W2")
    pixscale = 2.75 * u.arcsec
    size = 32
    unit = nanomaggy_vega
    vega_zeropoint = 22.5
    vega_to_ab = {"W1": 2.699, "W2": 3.339}
    missing_flag = MantisFlag.UNWISE_MISSING
    psf_fwhm = {"W1": 6.1 * u.arcsec, "W2": 6.4 * u.arcsec}
    #: The viewer's names of the bands (``BAND0 = 1``).
    native_bands = (1, 2)
    filter_curves = {"W1": "wise2010-W1", "W2": "wise2010-W2"}
    band_aliases = {"1": "W1", "w1": "W1", "2": "W2", "w2": "W2"}

    def zeropoints(self, header=None):
        """AB zero points in band order: 22.5 + (AB - Vega offset)."""
        return [self.vega_zeropoint + self.vega_to_ab[b] for b in self.bands]


survey = UnwiseSurvey()
