"""
Validate against spectroscopic redshifts
========================================

Match a photo-z table to spectroscopic redshifts, compute the usual metrics with
their errors, and look at the figures that show where the PDFs are right and where
they are not.
"""
# %%
# The services
# ------------
# Offline, loopback copies of the cutout services and of SDSS SkyServer serve the
# bundled sample sky and a mock spectroscopic catalog of it. On the real sky, drop
# this block: ``catalog="sdss"`` then asks the real SkyServer.
import contextlib
import tempfile

import astropy.units as u
import numpy as np
from astropy.table import Table

from astro_mantis import add_redshift_columns, conf, log, match_spectroscopic
from astro_mantis.simulate import SampleSky
from astro_mantis.spectro import conf as spectro_conf
from astro_mantis.testing import SkyServer, SurveyServer, make_specobj

log.setLevel("WARNING")
sky = SampleSky()
services = contextlib.ExitStack()
survey = services.enter_context(SurveyServer(sky=sky))
services.enter_context(survey.configure(conf))
services.enter_context(conf.set_temp("cache_dir", tempfile.mkdtemp()))
skyserver = services.enter_context(SkyServer(make_specobj(sky.catalog, seed=0)))
services.enter_context(skyserver.configure())
services.enter_context(spectro_conf.set_temp("skyserver_min_interval", 0.0))

# %%
# Photo-z, then spectroscopic redshifts
# -------------------------------------
cat = sky.catalog[:150]
table = Table({"ra": np.array(cat["ra"]), "dec": np.array(cat["dec"]),
               "ebv_csfd": np.array(cat["ebv_csfd"]),
               "ebv_planck": np.array(cat["ebv_planck"])})
add_redshift_columns(table, ebv=("ebv_csfd", "ebv_planck"), progress=False)
match_spectroscopic(table, catalog="sdss", radius=1 * u.arcsec, cache=False,
                    progress=False)
matched = ~np.ma.getmaskarray(table["z_spec"]) & ~np.ma.getmaskarray(table["z_median"])
print(f"{matched.sum()} of {len(table)} galaxies have a photo-z and a good spectrum")
print(table["z_median", "z_lo68", "z_hi68", "z_spec", "spec_class", "spec_sep"][:6])

# %%
# Metrics with bootstrap errors
# -----------------------------
# NMAD, bias, outlier fractions of the recommended point estimate (the PDF median,
# ``z_median``), and, from the PDFs, CRPS, the PIT's KS statistic and the coverage of
# the credible intervals, all against ``z_spec``. (Simulated galaxies: these numbers
# say how the bundled model does on its own simulator, not on the real sky.)
from astro_mantis import RedshiftPDF  # noqa: E402
from astro_mantis.metrics import photoz_metrics  # noqa: E402

good = table[matched]
m = photoz_metrics(np.asarray(good["z_median"]), np.asarray(good["z_spec"]),
                   pdf=RedshiftPDF.from_table(good), n_bootstrap=200, seed=0)
for key in ("nmad", "bias_median", "outlier_0.15", "crps", "pit_ks", "coverage_68"):
    print(f"{key:>13}: {m[key]:.4f} ± {m.errors.get(key, float('nan')):.4f}")

# %%
# Figures
# -------
# Photo-z against spectroscopic redshift, the PIT histogram (flat when the PDFs are
# calibrated) and n(z), side by side.
from astro_mantis.visualization import plot_photoz_summary  # noqa: E402

fig = plot_photoz_summary(good, z_spec="z_spec")

# %%
# Stop the loopback services.
services.close()

# %%
# ----
#
# **Reference/API:** `~astro_mantis.match_spectroscopic`,
# `~astro_mantis.metrics.photoz_metrics`,
# `~astro_mantis.visualization.plot_photoz_summary`. **Next:** :ref:`spectro` — the
# spectroscopic catalogs and the matching options; :ref:`pdf` — what each metric
# measures; :ref:`evaluation` — the same, per bin of redshift.
