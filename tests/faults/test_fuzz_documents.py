"""Fuzzing what jetstore reads from files (hypothesis, deterministic): configs as YAML text and as graphs of
new variables, stored stats files, and manifests against the compiled checks that stand in for jsonschema.
Every input gives a usable object or one error of jetstore's (naming the file or key), never a crash; what is
accepted is usable (finite standardisation, weights in [0, 1]); the compiled manifest check never accepts
what jsonschema refuses."""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jetstore.config.variables import VariableResolver
from jetstore.config.weaver import training_config_from_dict
from jetstore.dataset import manifest as manifest_module
from jetstore.dataset.dataset import Dataset
from jetstore.errors import DatasetError, SchemaError
from jetstore.model import paths
from jetstore.schema.load import yaml_load
from jetstore.stats.result import StatsResult
from tests.helpers import REPO, stats_file

CONFIG_TEXT = (REPO / "tests/fixtures/weaver_cms_ak4.yaml").read_text()
CONFIG = yaml_load(CONFIG_TEXT, "config")
FUZZ = settings(max_examples=int(os.environ.get("JETSTORE_FUZZ_EXAMPLES", 150)), deadline=None, derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ODD_NUMBERS = st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300, -1e300, 2.0, 0.5, 10**20])
ODD_VALUES = st.one_of(ODD_NUMBERS, st.none(), st.booleans(), st.text(max_size=5), st.just([]), st.just({}),
                       st.just([[1.0, 2.0]]), st.just("[" * 70 + "]" * 70))


@pytest.fixture(scope="module")
def schema(train_dataset):
    return Dataset.open(train_dataset).schema


@pytest.fixture(scope="module")
def stats_text(train_dataset) -> str:
    return stats_file(train_dataset).read_text()


@pytest.fixture(scope="module")
def manifest_data(train_dataset) -> dict:
    return json.loads((Path(train_dataset) / paths.MANIFEST).read_text())


# ---------------------------------------------------------------- configs


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(CONFIG_TEXT)), st.integers(0, 40),
                          st.sampled_from(["[", "]", "{", "}", ":", "- ", "\n  ", "*a", "&a ", "!!python/object ",
                                           "'", '"', "np.where(x)", "nan", ".inf", "1e999", "\t", "?"])),
                min_size=1, max_size=4))
def test_config_text_fuzz(edits):
    """The fixture config's text with pieces cut out and YAML syntax spliced in."""
    text = CONFIG_TEXT
    for at, cut, piece in edits:
        text = text[:at] + piece + text[at + cut:]
    try:
        training_config_from_dict(yaml_load(text, "fuzz.yaml"), "fuzz.yaml")
    except SchemaError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)


NAMES = [f"v{i}" for i in range(6)]


@FUZZ
@given(st.dictionaries(st.sampled_from(NAMES), st.lists(st.sampled_from([*NAMES, "jet_pt", "jet_pfcand_pt_log"]),
                                                        min_size=1, max_size=3), min_size=1, max_size=6))
def test_new_variable_graphs(schema, graph):
    """Random graphs of new variables over stored columns (cycles, self-references, chains): the resolver is
    built, or refuses naming a cycle, before any evaluation; accepted ones resolve to stored columns only."""
    config = copy.deepcopy(CONFIG)
    config["new_variables"] = {name: " + ".join(uses) for name, uses in graph.items()}
    graph = {name: uses for name, uses in graph.items() if uses != [name]}  # `x: x` is dropped, as weaver does
    parsed = training_config_from_dict(config, "fuzz.yaml")
    try:
        resolver = VariableResolver(schema, parsed)
    except SchemaError as exc:
        assert "refers to itself" in str(exc) and _has_cycle(graph)
        return
    assert not _has_cycle(graph)
    for name in graph:
        try:
            needs = resolver.needs([name], with_selection=False)
        except SchemaError as exc:
            assert "is neither a column" in str(exc)  # a name the graph uses but never defines
            continue
        assert set(needs.jets) | {f for fs in needs.blocks.values() for f in fs} <= {"jet_pt", "jet_pfcand_pt_log"}


def _has_cycle(graph: dict[str, list[str]]) -> bool:
    state: dict[str, int] = {}

    def visit(name: str) -> bool:
        if state.get(name) == 1:
            return True
        if state.get(name) == 2 or name not in graph:
            return False
        state[name] = 1
        found = any(visit(child) for child in graph[name])
        state[name] = 2
        return found

    return any(visit(name) for name in graph)


# ---------------------------------------------------------------- stats files


def _paths(value, prefix=()):
    """Every path to a leaf (and to each container) of a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list) and value:
        for index in {0, len(value) - 1}:
            yield from _paths(value[index], (*prefix, index))


def _place(document, data) -> tuple[dict | list, str | int]:
    """A container inside ``document`` and one of its keys, drawn from the document as it is now."""
    where = data.draw(st.sampled_from([p for p in _paths(document) if p]))
    target = document
    for key in where[:-1]:
        target = target[key]
    return target, where[-1]


@FUZZ
@given(st.data())
def test_stats_file_fuzz(stats_text, data):
    """A real stats file with values replaced anywhere (NaN, ±inf, 1e300, negatives, wrong types, deep nesting):
    read as usable stats or refused as a :class:`DatasetError` naming the file."""
    document = json.loads(stats_text)
    for _ in range(data.draw(st.integers(1, 3))):
        target, key = _place(document, data)
        target[key] = data.draw(ODD_VALUES)
    try:
        result = StatsResult.from_json(json.dumps(document), "_stats/fuzz.json")
    except DatasetError as exc:
        assert str(exc).startswith("_stats/fuzz.json: ") and "\n" not in str(exc)
        return
    for variable in result.variables.values():
        assert math.isfinite(variable.center) and math.isfinite(variable.scale) and variable.scale > 0
    for table in result.weight_tables.values():
        assert np.isfinite(table).all() and (table >= 0).all() and (table <= 1).all()


# ---------------------------------------------------------------- manifests: the compiled check is sound


@FUZZ
@given(st.data())
def test_compiled_manifest_check_never_accepts_what_jsonschema_refuses(manifest_data, data):
    document = copy.deepcopy(manifest_data)
    for _ in range(data.draw(st.integers(1, 3))):
        target, key = _place(document, data)
        if data.draw(st.booleans()) and isinstance(target, dict):
            target.pop(key, None)
            target[data.draw(st.sampled_from(["pieces", "source", "uuid", "bogus", "version"]))] = 1
        else:
            target[key] = data.draw(st.one_of(ODD_VALUES, st.integers(-3, 3), st.sampled_from(
                ["zstd", "zarr", "shards/x", "0123456789abcdef", "../x", "float32", 2, 3])))
    for definition, value in (("#", document), ("#/$defs/shard", document.get("shards", [None])[0]
                                                if isinstance(document.get("shards"), list) and document["shards"]
                                                else None)):
        accepted = manifest_module._predicate(definition)(value)
        valid = not list(jsonschema.Draft202012Validator(manifest_module._target(definition)).iter_errors(value))
        assert valid or not accepted, (definition, value)


def test_the_compiled_check_accepts_what_jetstore_writes(manifest_data):
    assert manifest_module._predicate("#")(manifest_data)
    assert all(manifest_module._predicate("#/$defs/shard")(s) for s in manifest_data["shards"])
