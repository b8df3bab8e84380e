"""jetstore stats against weaver-core's own AutoStandardizer and WeightMaker on the same jets."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import weaver.utils.data.preprocess as weaver_preprocess
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from weaver.utils.data.config import DataConfig

from jetstore import load_schema
from jetstore.config import load_training_config
from jetstore.config.weaver import training_config_from_dict
from jetstore.dataset.dataset import Dataset
from jetstore.errors import DatasetError, SchemaError
from jetstore.interop.weaver import export_weaver_yaml
from jetstore.model.layout import Layout
from jetstore.schema import schema_from_dict
from jetstore.stats import quantiles
from jetstore.stats.result import read_stats, write_stats
from jetstore.stats.run import compute_stats
from tests.helpers import REPO, cli, run_convert

CONFIG = REPO / "tests" / "fixtures" / "weaver_cms_ak4.yaml"


@pytest.fixture(autouse=True)
def _no_weaver_sleep(monkeypatch):
    monkeypatch.setattr(weaver_preprocess.time, "sleep", lambda _: None)


@pytest.fixture(scope="module")
def unskimmed(dask_client, sample_files, tmp_path_factory):
    """The sample converted without a convert-time skim, one shard per file (so weaver's per-file data
    fraction and jetstore's per-shard fraction select the same jets)."""
    data = load_schema("cms_ak4").to_dict()
    data.pop("selection")
    data.pop("sort_by")
    out = tmp_path_factory.mktemp("stats") / "ds.zarr"
    assert run_convert(dask_client, sample_files, out, "zarr", schema=schema_from_dict(data)).ok
    return Dataset.open(str(out))


def weaver_reference(files, options):
    config = DataConfig(print_info=False, **copy.deepcopy(options))
    standardized = weaver_preprocess.AutoStandardizer(files, config).produce()
    weighted = weaver_preprocess.WeightMaker(files, config).produce() if options.get("weights") else None
    return standardized.preprocess_params, (weighted.reweight_hists if weighted else None)


def assert_same_as_weaver(result, params, hists):
    for name, stats in result.variables.items():
        assert stats.center == pytest.approx(params[name]["center"], rel=1e-6, abs=1e-9), name
        assert stats.scale == pytest.approx(params[name]["scale"], rel=1e-6), name
    if hists is not None:
        assert set(result.weight_tables) == set(hists)
        for label, table in result.weight_tables.items():
            assert table.dtype == np.float32
            np.testing.assert_array_equal(table, hists[label], err_msg=label)


def test_bundled_weaver_config_matches_weaver(dask_client, unskimmed, sample_files):
    config = load_training_config(CONFIG)
    result = compute_stats(unskimmed, config, dask_client, log=lambda _: None)
    params, hists = weaver_reference(sample_files, config.options)
    assert_same_as_weaver(result, params, hists)
    assert len(result.variables) == 14 and result.standardization_fraction == 0.5
    selected = result.class_hists["label_b"].sum()
    assert 0 < selected < result.jets_read


@pytest.mark.parametrize("change", [
    {"reweight_method": "ref", "reweight_threshold": 5},
    {"class_weights": [2, 1, 1, 0.5, 1, 1], "reweight_discard_under_overflow": False},
])
def test_weight_variants_match_weaver(dask_client, unskimmed, sample_files, change):
    options = yaml.safe_load(CONFIG.read_text())
    options["weights"].update(change)
    options["preprocess"]["data_fraction"] = 1.0
    config = training_config_from_dict(options)
    result = compute_stats(unskimmed, config, dask_client, log=lambda _: None)
    assert_same_as_weaver(result, *weaver_reference(sample_files, options))


def test_fraction_option(dask_client, unskimmed, sample_files):
    options = yaml.safe_load(CONFIG.read_text())
    options["preprocess"]["data_fraction"] = 0.3
    del options["weights"]
    config = training_config_from_dict(options)
    result = compute_stats(unskimmed, load_training_config(CONFIG), dask_client, fraction=0.3, log=lambda _: None)
    params, _ = weaver_reference(sample_files, config.options)
    assert_same_as_weaver(result, params, None)
    assert result.standardization_fraction == result.weights_fraction == 0.3
    full = compute_stats(unskimmed, load_training_config(CONFIG), dask_client, fraction=1.0, log=lambda _: None)
    assert full.variables["jet_pfcand_pt_log"].count > 3 * result.variables["jet_pfcand_pt_log"].count
    with pytest.raises(SchemaError, match="fraction"):
        compute_stats(unskimmed, config, dask_client, fraction=1.5, log=lambda _: None)


def test_weaver_fraction_on_sorted_skimmed_shards_matches_weaver(dask_client, sample_files, tmp_path):
    """The default fraction rule is weaver-core's, the first part of every input file: exact even on shards
    skimmed at conversion and sorted by (class, pT), where a shard straddles the cut."""
    assert run_convert(dask_client, sample_files, tmp_path / "sorted.zarr", "zarr", jets_per_shard=400).ok
    dataset = Dataset.open(str(tmp_path / "sorted.zarr"))
    assert dataset.schema.sort_by == ("label", "jet_pt") and dataset.schema.selection is not None
    config = load_training_config(CONFIG)
    assert config.data_fraction == 0.5
    result = compute_stats(dataset, config, dask_client, log=lambda _: None)
    assert result.fraction_mode == "weaver"
    assert_same_as_weaver(result, *weaver_reference(sample_files, config.options))


def test_random_fraction_on_sorted_shards_is_unbiased(dask_client, sample_files, tmp_path):
    """The random mode: a fixed pseudo-random half of every shard, not its (biased) sorted first part."""
    assert run_convert(dask_client, sample_files, tmp_path / "sorted.zarr", "zarr").ok
    dataset = Dataset.open(str(tmp_path / "sorted.zarr"))
    config = load_training_config(CONFIG)
    half = compute_stats(dataset, config, dask_client, fraction=0.5, fraction_mode="random",
                         log=lambda _: None).variables
    full = compute_stats(dataset, config, dask_client, fraction=1.0, log=lambda _: None).variables
    for name in ("jet_pfcand_pt_log", "jet_pfcand_energy_log", "jet_sv_pt_log"):
        ratio = half[name].count / full[name].count
        assert 0.4 < ratio < 0.6, name
        assert half[name].center == pytest.approx(full[name].center, abs=0.1 / full[name].scale), name


def test_unit_counts_add_up_to_the_class_histograms(dask_client, unskimmed):
    config = load_training_config(CONFIG)
    result = compute_stats(unskimmed, config, dask_client, log=lambda _: None)
    assert result.unit_jets == Layout().chunk_jets
    totals = np.zeros(6 * 11 * 5)
    for shard in unskimmed.manifest.shards:
        rows = result.unit_counts[shard.name]
        assert rows[:, 0].max() < -(-shard.n_jets // Layout().chunk_jets)
        np.add.at(totals, rows[:, 1], rows[:, 2])
    expected = np.stack([result.class_hists[c] for c in config.weights.classes]).ravel()
    np.testing.assert_array_equal(totals, expected)


def test_moments_and_nan_count(dask_client, unskimmed):
    options = yaml.safe_load(CONFIG.read_text())
    options["new_variables"]["dxy_log"] = "np.log(jet_pfcand_dxy)"  # NaN for negative impact parameters
    options["inputs"]["pf_features"]["vars"].append("dxy_log")
    config = training_config_from_dict(options)
    result = compute_stats(unskimmed, config, dask_client, fraction=1.0, log=lambda _: None)
    table = unskimmed.read_all()
    keep = (table.jets["jet_pt"] > 20) & (np.abs(table.jets["jet_eta"]) < 2.5) & (table.jets["label_undef"] == 0)
    counts = table.blocks["pfcand"].counts
    dxy = np.split(table.blocks["pfcand"].features["jet_pfcand_dxy"], np.cumsum(counts)[:-1])
    selected = np.concatenate([d for d, k in zip(dxy, keep, strict=True) if k])
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(selected)
    stats = result.variables["dxy_log"]
    assert stats.count == selected.size and stats.nan_count == int(np.isnan(logs).sum()) > 0
    assert stats.center == pytest.approx(float(np.percentile(np.nan_to_num(logs), 50)), rel=1e-6)
    pt = result.variables["jet_pfcand_pt_log"]
    values = np.concatenate([v for v, k in zip(np.split(table.blocks["pfcand"].features["jet_pfcand_pt_log"],
                                                       np.cumsum(counts)[:-1]), keep, strict=True) if k])
    assert pt.mean == pytest.approx(values.astype(np.float64).mean(), rel=1e-9)
    assert pt.std == pytest.approx(values.astype(np.float64).std(), rel=1e-6)
    assert (pt.min, pt.max) == (float(values.min()), float(values.max()))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(hnp.arrays(np.float32, st.integers(1, 400), elements=st.one_of(
    st.floats(-1e6, 1e6, width=32), st.just(0.0), st.just(np.nan), st.sampled_from([1.5, -2.25]))),
       st.integers(1, 4))
def test_exact_quantiles_merge_like_one_pass(values, pieces):
    """Any data, cut into pieces: the two-pass radix select gives numpy's percentiles exactly."""
    parts = np.array_split(values, pieces)
    coarse = sum(quantiles.coarse_histogram(quantiles.float_keys(p)) for p in parts)
    ranks = quantiles.percentile_ranks(values.size, (16, 50, 84))
    targets = quantiles.locate(coarse, [r for pair in ranks.values() for r in pair[:2]])
    fine = {}
    for part in parts:
        for b, hist in quantiles.fine_histograms(quantiles.float_keys(part), targets.bins).items():
            fine[b] = fine.get(b, 0) + hist
    statistics = quantiles.order_statistics(targets, fine)
    expected = np.percentile(np.nan_to_num(values).astype(np.float64), [16, 50, 84])
    got = [quantiles.interpolate(statistics, ranks[q]) for q in (16, 50, 84)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_results_are_stored_per_config_and_checked(dask_client, unskimmed):
    first = load_training_config(CONFIG)
    options = yaml.safe_load(CONFIG.read_text())
    options["selection"] = "(jet_pt > 30) & (label_undef == 0)"
    second = training_config_from_dict(options)
    assert first.hash != second.hash
    for config in (first, second):
        write_stats(unskimmed, compute_stats(unskimmed, config, dask_client, log=lambda _: None))
    a = read_stats(unskimmed, first.hash)
    b = read_stats(unskimmed, second.hash)
    assert a.variables["jet_pfcand_pt_log"].center != b.variables["jet_pfcand_pt_log"].center
    with pytest.raises(DatasetError, match="run `jetstore stats` first"):
        read_stats(unskimmed, "feedbeef")
    src = f"{unskimmed.root}/_stats/{second.hash}.json"
    unskimmed.fs.copy(src, f"{unskimmed.root}/_stats/feedbeef.json")
    with pytest.raises(DatasetError, match=f"holds stats for config {second.hash}"):
        read_stats(unskimmed, "feedbeef")
    stale = json.loads(unskimmed.fs.cat_file(src))  # as after an append: computed on other shards
    unskimmed.fs.pipe_file(src, json.dumps({**stale, "plan_hash": "0000"}).encode())
    with pytest.raises(DatasetError, match=r"another version of the data .*rerun `jetstore stats`"):
        read_stats(unskimmed, second.hash)


def test_export_weaver_config_is_used_by_weaver_without_recomputing(dask_client, unskimmed, sample_files, tmp_path):
    config = load_training_config(CONFIG)
    result = compute_stats(unskimmed, config, dask_client, log=lambda _: None)
    exported = tmp_path / "exported.yaml"
    exported.write_text(export_weaver_yaml(config, result))
    loaded = DataConfig.load(str(exported))
    assert not loaded._missing_standardization_info
    assert loaded.reweight_hists is not None
    for name, stats in result.variables.items():
        assert loaded.preprocess_params[name]["center"] == pytest.approx(stats.center)
    assert loaded.preprocess_params["pfcand_mask"]["center"] is None
    assert loaded.preprocess_params["jet_pfcand_charge"] == {
        "length": 64, "pad_mode": "constant", "center": None, "scale": 1.0, "min": -5.0, "max": 5.0, "pad_value": 0.0}
    for label, table in result.weight_tables.items():
        np.testing.assert_array_equal(loaded.reweight_hists[label], table)
    again = training_config_from_dict(yaml.safe_load(exported.read_text()))
    assert again.hash == config.hash and not again.auto_variables


@pytest.mark.parametrize("change, message", [
    ({"inputz": {}}, "unknown key 'inputz' (did you mean 'inputs'?)"),
    ({"weights": {"reweight_method": "flatt"}}, "reweight_method must be 'flat' or 'ref'"),
    ({"new_variables": {"x": "__import__('os')"}}, "new_variables.x: calling '__import__'"),
    ({"labels": {"type": "simple", "value": []}}, "labels.value must be a non-empty list"),
    ({"preprocess": {"method": "auto", "data_fraction": 0}}, "data_fraction must be in (0, 1]"),
])
def test_bad_configs_name_the_key(change, message):
    options = yaml.safe_load(CONFIG.read_text()) | change
    with pytest.raises(SchemaError) as info:
        training_config_from_dict(options, where="cfg.yaml")
    assert message in str(info.value)


def test_bad_bins_and_missing_variables(dask_client, unskimmed):
    options = yaml.safe_load(CONFIG.read_text())
    options["weights"]["reweight_vars"]["jet_pt"] = [20, 10, 30]
    with pytest.raises(SchemaError, match="increasing list of bin edges"):
        training_config_from_dict(options)
    options = yaml.safe_load(CONFIG.read_text())
    options["inputs"]["pf_features"]["vars"].append("jet_pfcand_pt_logg")
    expected = r"variable 'jet_pfcand_pt_logg' is neither.*did you mean 'jet_pfcand_pt_log'"
    with pytest.raises(SchemaError, match=expected):
        compute_stats(unskimmed, training_config_from_dict(options), dask_client, log=lambda _: None)


@pytest.mark.slow
def test_cli_stats_plots_and_export(unskimmed, tmp_path):
    result = cli("stats", unskimmed.url, "--config", str(CONFIG), "--workers", "1", "--plots", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    assert "stats for config" in result.stdout and "jet_sv_d3dsig" in result.stdout
    pngs = sorted((tmp_path / "p").glob("*.png"))
    assert len(pngs) == 6 + 14
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pngs)
    assert all(p.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-" for p in pngs)
    from PIL import Image

    with Image.open(pngs[0]) as image:
        assert round(image.info["dpi"][0]) >= 150
    out = tmp_path / "w.yaml"
    exported = cli("export-weaver", unskimmed.url, "--config", str(CONFIG), "-o", str(out))
    assert exported.returncode == 0 and "reweight_hists" in out.read_text()


def test_plot_histograms_follow_the_data_without_a_comb():
    """The plotted histograms come from the pass-1 histogram (bins of 2^-7 relative width); spread over the
    plot bins they overlap they match an exact histogram of the values, with no comb of empty bins."""
    from jetstore.stats import quantiles
    from jetstore.stats.run import _plot_histograms

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.exponential(2.0, 200_000), np.zeros(50_000), rng.normal(0, 1, 100_000)])
    values = values.astype(np.float32)
    coarse = quantiles.coarse_histogram(quantiles.float_keys(values))
    plotted = _plot_histograms(coarse, float(np.median(values)), 0.5, -5.0, 5.0)
    edges, counts = np.array(plotted["raw_edges"]), np.array(plotted["raw_counts"])
    exact, _ = np.histogram(values, bins=edges)
    busy = exact > 1000
    assert busy.sum() > 50 and np.max(np.abs(counts - exact)[busy] / exact[busy]) < 0.05
    assert np.sum(plotted["std_counts"]) == pytest.approx(len(values))  # clipping keeps every entry
