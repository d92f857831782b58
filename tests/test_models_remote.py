# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The published checkpoint's download address (needs the internet: remote_data)."""
import pytest


@pytest.mark.remote_data
def test_published_checkpoint_url_serves_the_file():
    import urllib.request

    from astro_mantis.models.registry import MANTIS_SHRIMP_V1_URL, get_spec

    req = urllib.request.Request(MANTIS_SHRIMP_V1_URL, method="HEAD")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == get_spec("mantis-shrimp-v1").size
