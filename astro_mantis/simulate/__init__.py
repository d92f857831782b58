# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The mock sky: physically grounded galaxies in the three surveys' native units.

`MockSky` holds a catalog of mock galaxies (drawn by `draw_population` from a
`PopulationConfig`, or given: `sdss_galaxies` gives held-out real SDSS galaxies)
and renders, for any position, the FITS file the GALEX, Pan-STARRS1 or unWISE
cutout service would return there, with GalSim
(`ImagingConfig` sets PSFs, depths and coverage; `MockSkyConfig` gathers all
settings; `Randomisation`, with the presets `training_randomisation` and
`shifted_randomisation`, varies observing conditions and galaxy shapes over
documented ranges). The loopback servers of `astro_mantis.testing` serve it.

`make_dataset` renders training, validation and test shards from it
(`load_shard`, `iter_shards` read them back). `SampleSky` serves the small
sample of mock galaxies bundled with the package without GalSim
(`build_sample_sky` makes it). `flux_errors` gives the smallest flux error each
galaxy's own cutouts allow, for baselines that ask what colours measured from them
could achieve.

The names below are imported lazily, on first use, so that importing the
GalSim-free parts (`astro_mantis.simulate.service_format`, used by the
loopback servers, and `SampleSky`) does not require the simulation extras
(GalSim, kcorrect, speclite).
"""

import importlib as _importlib

__all__ = [
    "ImagingConfig",
    "MockSky",
    "MockSkyConfig",
    "PopulationConfig",
    "Randomisation",
    "SampleSky",
    "build_sample_sky",
    "draw_population",
    "flux_errors",
    "iter_shards",
    "load_sample_sky",
    "load_shard",
    "make_dataset",
    "sdss_galaxies",
    "shifted_randomisation",
    "training_randomisation",
]

_LAZY = {
    "ImagingConfig": "render",
    "MockSky": "sky",
    "MockSkyConfig": "sky",
    "PopulationConfig": "population",
    "Randomisation": "randomise",
    "SampleSky": "sample",
    "build_sample_sky": "sample",
    "draw_population": "population",
    "flux_errors": "matched_filter",
    "iter_shards": "dataset",
    "load_sample_sky": "sample",
    "load_shard": "dataset",
    "make_dataset": "dataset",
    "sdss_galaxies": "population",
    "shifted_randomisation": "randomise",
    "training_randomisation": "randomise",
}


def __getattr__(name):
    if name in _LAZY:
        module = _importlib.import_module(f"{__name__}.{_LAZY[name]}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
