#!/usr/bin/env python
# Licensed under a 3-clause BSD style license - see LICENSE
"""Make the figure of the spectroscopic truth page (``docs/spectro.rst``).

Run from anywhere, with astro_mantis installed::

    python docs/make_spectro_figures.py

No network is used: loopback copies of SDSS SkyServer, the SDSS Science Archive Server
and the cutout services (`astro_mantis.testing`) serve the bundled sample sky of mock
galaxies, its mock spectroscopic catalog (`astro_mantis.testing.make_specobj`, seed 0)
and synthetic spectra. The steps are those of the page:

1. `match_spectroscopic` of the sample galaxies against the loopback SkyServer;
2. the cutouts of one matched star-forming galaxy through `astro_mantis.Mantis`, and
   its redshift PDF from the bundled ``mantis-mini`` network;
3. `plot_spectrum` of its (synthetic) spectrum, with the lines at z_spec and at the
   photo-z, beside the PDF.

Writes ``docs/_static/spectro_example.png`` (kept under 150 kB).
"""
import contextlib
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from astropy import units as u  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.table import Table  # noqa: E402

from astro_mantis import Mantis, conf, log  # noqa: E402
from astro_mantis.simulate import SampleSky  # noqa: E402
from astro_mantis.spectro import conf as spectro_conf  # noqa: E402
from astro_mantis.spectro import match_spectroscopic, plot_spectrum  # noqa: E402
from astro_mantis.testing import SASServer, SkyServer, SurveyServer, make_specobj  # noqa: E402

STATIC = Path(__file__).resolve().parent / "_static"
OUT = STATIC / "spectro_example.png"


def main():
    from astropy.config.paths import temporary_cache_dir_path

    from astro_mantis.models import predict

    log.setLevel("WARNING")
    sky = SampleSky()
    specobj = make_specobj(sky.catalog, seed=0)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        os.environ["SAS_BASE_DIR"] = os.path.join(tmp, "sas")
        stack.enter_context(temporary_cache_dir_path(tmp, namespace="astro_mantis"))
        skyserver = stack.enter_context(SkyServer(specobj))
        stack.enter_context(skyserver.configure())
        sas = stack.enter_context(SASServer(specobj))
        stack.enter_context(sas.configure())
        survey = stack.enter_context(SurveyServer(sky=sky))
        stack.enter_context(survey.configure(conf))
        stack.enter_context(conf.set_temp("cache_dir", os.path.join(tmp, "cutouts")))
        stack.enter_context(spectro_conf.set_temp("skyserver_min_interval", 0.0))

        table = Table({"ra": sky.catalog["ra"], "dec": sky.catalog["dec"],
                       "z_true": sky.catalog["z"]})
        match_spectroscopic(table, catalog="sdss", radius=1 * u.arcsec, cache=False,
                            progress=False)
        # a matched star-forming galaxy at moderate redshift, inside every survey
        sub = {int(s): str(c) for s, c in zip(specobj["specObjID"], specobj["subClass"])}
        good = [i for i in range(len(table))
                if not table["z_spec"].mask[i] and 0.15 < table["z_spec"][i] < 0.35
                and sub.get(int(table["spec_id"][i])) == "STARFORMING"
                and table["dec"][i] > -25]
        i = good[0]
        cut = Mantis.get_cutouts(SkyCoord(table["ra"][i], table["dec"][i], unit="deg"))
        dust = np.array([[sky.catalog["ebv_csfd"][i], sky.catalog["ebv_planck"][i]]])
        pdf = predict([cut], model="mantis-mini", dust=dust)
        row = Table(table[i:i + 1])
        for name, col in pdf.to_table_columns(prefix="z_").items():
            row[name] = col
        fig = plot_spectrum(row[0])
        fig.set_size_inches(11, 4.0)
        fig.suptitle(f"A sample-sky galaxy matched to the (loopback) SDSS SkyServer: "
                     f"z_spec = {row['z_spec'][0]:.4f}, mantis-mini photo-z "
                     f"{row['z_mean'][0]:.3f}  (synthetic spectrum)", fontsize=10)
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.84, wspace=0.22)
        STATIC.mkdir(exist_ok=True)
        fig.savefig(OUT, dpi=90)
    size = OUT.stat().st_size
    print(f"wrote {OUT} ({size / 1e3:.0f} kB)")
    if size > 150_000:
        raise SystemExit(f"{OUT} is {size / 1e3:.0f} kB, more than 150 kB")


if __name__ == "__main__":
    main()
