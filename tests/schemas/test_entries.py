"""The entry transforms: bounded by their ceiling, monotone, 0 at 0, specs that read back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import entries

BOUNDED = ["cap:6", "cap:0.5", "saturate:1", "saturate:0.1", "log:6", "log:1000"]


@settings(deadline=None)  # timing is not the property (the machine may be loaded)
@given(st.lists(st.floats(0.0, 1e12, allow_nan=False), min_size=1, max_size=50), st.sampled_from(BOUNDED))
def test_bounded_transforms_stay_within_their_ceiling_and_keep_order(scores, spec):
    f = entries.parse(spec)
    r = np.sort(np.asarray(scores))
    x = f.apply(r)
    assert np.all(x >= 0) and np.all(x <= f.ceiling)
    assert np.all(np.diff(x) >= 0)  # monotone: a growing r_ui never shrinks its entry
    assert f.apply(0.0) == 0.0 and math.isfinite(f.ceiling)
    assert f.square(float(r[-1])) == pytest.approx(float(x[-1]) ** 2)


def test_specs_read_back_and_mistakes_are_one_line_errors():
    for spec in ["raw", *BOUNDED]:
        assert entries.parse(spec).spec == spec
        assert entries.parse(entries.parse(spec)) == entries.parse(spec)
    assert math.isinf(entries.RAW.ceiling) and entries.parse("saturate:2").ceiling == 1.0
    assert entries.parse("log:6").ceiling == pytest.approx(math.log(7))
    for bad, message in [
        ("sqrt", "unknown entry transform"),
        ("cap", "needs the cap"),
        ("cap:-1", "needs the cap"),
        ("saturate:x", "not a number"),
        ("raw:2", "takes no parameter"),
        ("log:inf", "needs the cap"),
    ]:
        with pytest.raises(ValueError, match=message):
            entries.parse(bad)
    # The stream folds the default's norms: they must be the same transform.
    assert entries.DEFAULT == entries.FOLDED
