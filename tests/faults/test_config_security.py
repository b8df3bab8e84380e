"""Fuzzing the schema and training-config loaders: any input gives a valid object or one clear error."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from jetstore.config.weaver import training_config_from_dict
from jetstore.errors import SchemaError
from jetstore.schema import schema_from_dict
from tests.helpers import REPO

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, width=32),
                    st.sampled_from(["jet_pt", "np.abs(jet_eta)", "__import__('os')", "label_b", "x.__class__",
                                     "[1 for i in range(9)]", "open('f')", "auto", "constant", "wrap"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
BASE_CONFIG = yaml.safe_load((REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text())
BASE_SCHEMA = yaml.safe_load((REPO / "jetstore/schema/bundled/cms_ak4.yaml").read_text())


@pytest.mark.slow
@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from([*BASE_SCHEMA, "bogus"]), VALUES, max_size=6))
def test_schema_loader_fuzz(changes):
    try:
        schema_from_dict({**BASE_SCHEMA, **changes})
    except SchemaError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from([*BASE_CONFIG, "bogus"]), VALUES, max_size=6))
def test_training_config_loader_fuzz(changes):
    try:
        training_config_from_dict({**BASE_CONFIG, **changes})
    except SchemaError as exc:
        assert str(exc)
