"""LocalTiles: the surveys asked for, by name, as the network path takes them."""
import pytest
from astropy.coordinates import SkyCoord

from astro_mantis import Mantis
from astro_mantis.flags import MantisFlag
from astro_mantis.sources import LocalTiles

COORD = SkyCoord(150.1, 2.2, unit="deg")


@pytest.fixture
def tiles(tmp_path):
    (tmp_path / "galex").mkdir()  # a tile directory without tiles: nothing covered
    with LocalTiles(galex=tmp_path / "galex", index_dir=tmp_path / "index") as t:
        yield t


def test_one_survey_may_be_named_as_a_string(tiles):
    cut = tiles.get_cutouts(COORD, surveys="galex")
    assert list(cut.status) == ["galex"] and cut.missing == ("galex",)
    cut = Mantis.get_cutouts(COORD, surveys="unwise", source=tiles)
    assert list(cut.status) == ["unwise"]


def test_a_survey_without_a_directory_is_not_fetched_not_failed(tiles):
    cut = tiles.get_cutouts(COORD, surveys=["unwise"])
    assert cut.status["unwise"] == "not fetched: no local unwise tiles"
    assert cut.flags == MantisFlag.UNWISE_MISSING  # no FETCH_FAILED: nothing was tried
