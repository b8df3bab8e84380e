"""The per-jet train / held-out split: disjoint, the asked share, independent of where the inputs lay."""

from __future__ import annotations

import numpy as np
import pytest

from jetstore.model.split import Split


def test_parts_are_complementary_with_the_asked_share():
    entries = np.arange(200_000)
    held = Split("holdout", 0.1).mask("/data/zbb_1.root", entries)
    train = Split("train", 0.1).mask("/data/zbb_1.root", entries)
    assert not (held & train).any() and (held | train).all()
    assert abs(held.mean() - 0.1) < 0.003
    assert Split("all", 0.1).mask("/data/zbb_1.root", entries).all()
    assert Split("train", 0.0).mask("/data/zbb_1.root", entries).all()


def test_the_split_depends_on_the_file_name_and_entry_only():
    entries = np.arange(10_000)
    split = Split("holdout", 0.25)
    here = split.mask("/home/me/in/qcd_3.root", entries)
    assert (split.mask("s3://bucket/skims/qcd_3.root", entries) == here).all()
    assert (split.mask("/home/me/in/qcd_3.root", entries[::-1])[::-1] == here).all()  # per entry, not position
    other = split.mask("/home/me/in/qcd_4.root", entries)
    assert 0.3 < (other != here).mean() < 0.45  # independent draws: 2 p (1 - p) = 0.375


@pytest.mark.parametrize("part, fraction", [("test", 0.1), ("holdout", 1.0), ("holdout", -0.1)])
def test_bad_splits_are_refused(part, fraction):
    with pytest.raises(ValueError):
        Split(part, fraction)
