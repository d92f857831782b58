# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""`astro_mantis.MantisFlag` reads the values of ``z_flags`` columns."""
import numpy as np
import pytest

from astro_mantis import MantisFlag


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint16, np.uint32])
def test_numpy_integers_are_flags(dtype):
    # every combination of the members, as a z_flags column holds them: numpy integers
    column = np.arange(2 * max(MantisFlag) - 1, -1, -1, dtype=dtype)
    for value in column:
        flag = MantisFlag(value)
        assert type(flag) is MantisFlag and flag == int(value)
        assert flag is MantisFlag(int(value))  # the same member or pseudo-member
    assert MantisFlag(np.int32(663)) == (MantisFlag.GALEX_MISSING | MantisFlag.PANSTARRS_MISSING
                                        | MantisFlag.UNWISE_MISSING | MantisFlag.FETCH_FAILED
                                        | MantisFlag.DUST_UNKNOWN | MantisFlag.NOT_ESTIMATED)
    assert MantisFlag(np.int32(16)) is MantisFlag.FETCH_FAILED
    # bits of surveys beyond the built-in three (SURVEY_FLAG_BITS) too
    assert MantisFlag(np.int32(1 << 20)) == 1 << 20


def test_what_is_not_an_integer_is_refused():
    for value in (1.5, np.float32(2.5), "4", None):
        with pytest.raises(ValueError, match="not a valid MantisFlag"):
            MantisFlag(value)
