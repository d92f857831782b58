"""
Photo-z for a catalog
=====================

Add redshift PDF columns to a table of positions, look at what came back, save it,
and draw one row.
"""
# %%
# The services
# ------------
# On the real sky, nothing needs starting: the cutouts come from the Pan-STARRS and
# Legacy Surveys services. Here, offline, loopback copies of those services serve the
# bundled sample sky, and a temporary cache keeps the cutouts.
import contextlib
import tempfile

import numpy as np
from astropy.table import Table

from astro_mantis import MantisFlag, add_redshift_columns, conf, log
from astro_mantis.simulate import SampleSky
from astro_mantis.testing import SurveyServer

log.setLevel("WARNING")
sky = SampleSky()
services = contextlib.ExitStack()  # on the real sky: none of this
server = services.enter_context(SurveyServer(sky=sky))
services.enter_context(server.configure(conf))
services.enter_context(conf.set_temp("cache_dir", tempfile.mkdtemp()))

# %%
# A catalog
# ---------
# Any astropy table with positions will do: degrees, a unit, or sexagesimal strings.
# Here, 40 galaxies of the sample with their Milky Way E(B−V), plus one typo.
cat = sky.catalog[:40]
table = Table({"ra": np.array(cat["ra"]), "dec": np.array(cat["dec"]),
               "ebv": np.array(cat["ebv_csfd"]), "z_true": np.array(cat["z"])})
table["ra"][5] = 400.0  # a typo: flagged BAD_COORDINATE, never wrapped

# %%
# Redshift columns
# ----------------
# One call; one row out for every row in.
add_redshift_columns(table, ebv="ebv", progress=False)
print(table["ra", "dec", "z_true", "z_median", "z_lo68", "z_hi68", "z_flags"][:8])

# %%
# Which rows can you use? ``z_flags`` holds `~astro_mantis.MantisFlag` bits.
flags = np.asarray(table["z_flags"])
for i in (0, 5):
    print(i, int(flags[i]), MantisFlag(int(flags[i])).name)
usable = (flags & MantisFlag.NOT_ESTIMATED) == 0
print(f"{usable.sum()} of {len(table)} rows estimated")

# %%
# How far can you trust each ``z_median``? ``z_odds`` is its PDF's probability of
# being within 0.05 (1 + z) of the truth: one minus its mean is the outlier fraction
# to expect, and a cut on it keeps the surer rows. These galaxies are simulated, so
# the true redshifts say what happened (on real data, use spectroscopic ones).
est = table[usable]
odds = np.asarray(est["z_odds"])
z_true, z_med = np.asarray(est["z_true"]), np.asarray(est["z_median"])
outlier = np.abs(z_med - z_true) / (1 + z_true) > 0.05
sure = odds >= 0.7
print(f"all rows: {outlier.mean():.1%} outliers, {1 - odds.mean():.1%} expected")
print(f"z_odds >= 0.7: {sure.sum()} rows, {outlier[sure].mean():.1%} outliers, "
      f"{1 - odds[sure].mean():.1%} expected")

# %%
# What made these numbers: the settings are in the table's metadata.
from astro_mantis.table import run_settings  # noqa: E402

settings = run_settings(table)
print({k: settings[k] for k in ("model", "survey", "ebv", "tta", "point")})

# %%
# Save and draw a row
# -------------------
# Every astropy format works; the settings survive (FITS hands the keys back
# upper-case, ``run_settings`` reads either). A figure of one row shows its nine
# cutouts above its PDF.
from astro_mantis.tableio import write_table  # noqa: E402
from astro_mantis.visualization import plot_redshift_row  # noqa: E402

out = tempfile.mkdtemp() + "/catalog_photoz.fits"
write_table(table, out)
fig = plot_redshift_row(table, 0, z_spec="z_true")

# %%
# Stop the loopback services.
services.close()

# %%
# ----
#
# **Reference/API:** `~astro_mantis.add_redshift_columns`, `~astro_mantis.MantisFlag`,
# `~astro_mantis.table.run_settings`, `~astro_mantis.tableio.write_table`,
# `~astro_mantis.visualization.plot_redshift_row`. **Next:** the second tutorial,
# :ref:`sphx_glr_tutorials_plot_validate_spectro.py`; :ref:`photoz` — every option of
# the table job; :ref:`troubleshooting` when rows come back without estimates.
