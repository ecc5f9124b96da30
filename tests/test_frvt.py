"""Tests of lib.frvt against brute force: every pair scored in float64 and sorted, and bootstrap replicates
built by really copying the resampled people's images and re-scoring them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib import frvt
from lib.fairness import threshold_at_far

GROUP_NAMES = ("A", "B")


# ------------------------------------------------------------------------------------ reference
def pair_table(features, identities, groups) -> pd.DataFrame:
    """Every unordered pair (i < j) with its float64 cosine, genuine flag and category, by brute force."""
    features = np.asarray(features, dtype=np.float64)
    i, j = np.triu_indices(len(features), k=1)
    scores = np.einsum("pd,pd->p", features[i], features[j])
    groups = np.asarray(groups, dtype=object)
    unknown = pd.isna(groups[i]) | pd.isna(groups[j])
    category = np.where(unknown, "unknown", np.where(groups[i] == groups[j], groups[i], "cross-group"))
    return pd.DataFrame({"i": i, "j": j, "score": scores, "genuine": identities[i] == identities[j],
                         "category": category})


def reference_bins(scores, edges) -> np.ndarray:
    """Bin k holds (edges[k], edges[k+1]]."""
    return np.clip(np.searchsorted(edges, scores, side="left") - 1, 0, len(edges) - 2)


def clustered_faces(seed, n_identities=25, dim=16, spread=0.8):
    """Unit features around per-identity centres; identity sizes 1-7; groups per identity, some images
    unlabelled and one identity split across both groups (a cross-group genuine pair)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 8, n_identities)
    identities = np.repeat(np.arange(n_identities), sizes)
    centres = rng.standard_normal((n_identities, dim))
    features = centres[identities] + spread * rng.standard_normal((len(identities), dim))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    groups = np.array(GROUP_NAMES, dtype=object)[rng.integers(0, 2, n_identities)][identities]
    groups[rng.choice(len(groups), 4, replace=False)] = None
    split = np.flatnonzero(sizes >= 3)[0]
    first = np.flatnonzero(identities == split)[:2]
    groups[first] = ["A", "B"]
    return features.astype(np.float32), np.array([f"person{k:02d}" for k in identities]), groups


@pytest.fixture(scope="module")
def faces():
    """The first seed whose pair scores all lie 1e-6 away from every bin edge of ScoreBins(64), so the
    float32 scoring cannot move a pair into another bin than the float64 reference."""
    edges = frvt.ScoreBins(64).edges
    for seed in range(50):
        features, identities, groups = clustered_faces(seed)
        pairs = pair_table(features, identities, groups)
        gaps = np.abs(pairs["score"].to_numpy()[:, None] - edges[None, :]).min()
        if gaps > 1e-6:
            return features, identities, groups, pairs
    raise AssertionError("no seed keeps every score away from the bin edges")


BINS = frvt.ScoreBins(64)


# ------------------------------------------------------------------------------------ counting
def test_counts_equal_brute_force_histograms(faces):
    features, identities, groups, pairs = faces
    counts = frvt.count_all_pairs(features, identities, groups, order=GROUP_NAMES, bins=BINS, block_rows=7)
    assert counts.categories == ("A", "B", "cross-group", "unknown")
    pairs = pairs.assign(bin=reference_bins(pairs["score"], BINS.edges))
    for c, name in enumerate(counts.categories):
        for genuine, table in ((True, counts.genuine), (False, counts.impostor)):
            rows = pairs[(pairs["category"] == name) & (pairs["genuine"] == genuine)]
            np.testing.assert_array_equal(table[c], np.bincount(rows["bin"], minlength=BINS.count))
    assert counts.n_genuine + counts.n_impostor == len(features) * (len(features) - 1) // 2
    assert counts.genuine[2].sum() >= 1  # the split identity's cross-group genuine pair


def test_kept_impostor_tail_is_exactly_the_top_bins(faces):
    features, identities, groups, pairs = faces
    counts = frvt.count_all_pairs(features, identities, groups, bins=BINS, tail_fmr=0.1, block_rows=5)
    impostors = pairs[~pairs["genuine"]].assign(bin=lambda t: reference_bins(t["score"], BINS.edges))
    keep = math.ceil(0.1 * len(impostors))
    # the highest start bin with at least `keep` impostors at or above it
    assert (impostors["bin"] >= counts.tail_start).sum() >= keep > (impostors["bin"] >= counts.tail_start + 1).sum()
    expected = impostors[impostors["bin"] >= counts.tail_start]
    assert sorted(counts.tail_bin.tolist(), reverse=True) == counts.tail_bin.tolist()
    assert sorted(zip(counts.tail_bin.tolist(), counts.identities[counts.tail_identity_a],
                      counts.identities[counts.tail_identity_b])) == sorted(
        zip(expected["bin"].tolist(), identities[expected["i"]], identities[expected["j"]]))


def test_thresholds_and_rates_against_a_sort_of_all_scores(faces):
    features, identities, groups, pairs = faces
    counts = frvt.count_all_pairs(features, identities, groups, order=GROUP_NAMES, bins=BINS, block_rows=11)
    targets = (0.2, 0.05, 0.01, 0.0)
    table = frvt.error_rates(counts, targets)
    scores, genuine = pairs["score"].to_numpy(), pairs["genuine"].to_numpy()
    for target in targets:
        rows = table[table["target_fmr"] == target].set_index("group")
        threshold = rows["threshold"].iloc[0]
        exact = threshold_at_far(scores, genuine, target)  # the (floor(target N) + 1)-th largest impostor score
        k = int(np.flatnonzero(np.isclose(BINS.edges, threshold))[0])
        assert BINS.edges[k - 1] < exact <= BINS.edges[k]  # the smallest bin edge at or above it
        assert np.mean(scores[~genuine] > threshold) <= target
        for name in (*counts.categories, "overall"):
            chosen = pairs if name == "overall" else pairs[pairs["category"] == name]
            imp, gen = chosen[~chosen["genuine"]], chosen[chosen["genuine"]]
            assert rows.loc[name, "n_impostor"] == len(imp) and rows.loc[name, "n_genuine"] == len(gen)
            assert rows.loc[name, "false_matches"] == (imp["score"] > threshold).sum()
            assert rows.loc[name, "false_non_matches"] == (gen["score"] <= threshold).sum()


def test_det_points_match_brute_force_rates(faces):
    features, identities, groups, pairs = faces
    counts = frvt.count_all_pairs(features, identities, groups, order=GROUP_NAMES, bins=BINS)
    curves = frvt.det_curves(counts)
    assert set(curves["group"]) == {"A", "B", "overall"}
    for row in curves.sample(40, random_state=0).itertuples():
        chosen = pairs if row.group == "overall" else pairs[pairs["category"] == row.group]
        imp, gen = chosen.loc[~chosen["genuine"], "score"], chosen.loc[chosen["genuine"], "score"]
        assert row.fmr == pytest.approx(np.mean(imp > row.threshold))
        assert row.fnmr == pytest.approx(np.mean(gen <= row.threshold))


# ------------------------------------------------------------------------------------ bootstrap
def materialized_replicate(features, identities, groups, weights, identity_names, targets, edges):
    """A replicate built for real: person a's images copied weights[a] times as distinct people, all pairs
    re-scored, pairs between two copies of one person dropped; then thresholds and rates by counting."""
    rows, copy_of = [], []
    for a, name in enumerate(identity_names):
        for copy in range(weights[a]):
            members = np.flatnonzero(identities == name)
            rows.extend(members)
            copy_of.extend([(name, copy)] * len(members))
    rows = np.array(rows)
    person = np.array([f"{name}#{copy}" for name, copy in copy_of])
    original = identities[rows]
    pairs = pair_table(features[rows], person, groups[rows])
    same_person_other_copy = (original[pairs["i"]] == original[pairs["j"]]) & ~pairs["genuine"].to_numpy()
    pairs = pairs[~same_person_other_copy].assign(bin=lambda t: reference_bins(t["score"], edges))
    results = {}
    impostor_bins = np.sort(pairs.loc[~pairs["genuine"], "bin"].to_numpy())
    for target in targets:
        allowed = math.floor(target * len(impostor_bins) + 1e-9)
        k = next(k for k in range(len(edges)) if (impostor_bins >= k).sum() <= allowed)
        for name, chosen in [*pairs.groupby("category"), ("overall", pairs)]:
            imp, gen = chosen[~chosen["genuine"]], chosen[chosen["genuine"]]
            results[(target, name)] = (edges[k], len(gen), int((gen["bin"] < k).sum()), len(imp),
                                       int((imp["bin"] >= k).sum()))
    return results


def test_bootstrap_replicates_equal_materialized_resamples(faces):
    features, identities, groups, _ = faces
    counts = frvt.count_all_pairs(features, identities, groups, order=GROUP_NAMES, bins=BINS, tail_fmr=0.4,
                                  block_rows=9)
    targets = (0.1, 0.02)
    weights = frvt.identity_weights(len(counts.identities), n_boot=4, seed=3)
    replicates = frvt.bootstrap(counts, targets, weights=weights)
    for r, w in enumerate(weights):
        expected = materialized_replicate(features, identities, groups, w, counts.identities, targets, BINS.edges)
        got = replicates[replicates["replicate"] == r].set_index(["target_fmr", "group"])
        for (target, name), (threshold, n_gen, fnm, n_imp, fm) in expected.items():
            row = got.loc[(target, name)]
            assert (row["threshold"], row["n_genuine"], row["false_non_matches"], row["n_impostor"],
                    row["false_matches"]) == pytest.approx((threshold, n_gen, fnm, n_imp, fm)), (r, target, name)
        missing = got.reset_index()
        missing = missing[~missing.set_index(["target_fmr", "group"]).index.isin(expected.keys())]
        assert (missing["n_genuine"] == 0).all() and (missing["n_impostor"] == 0).all()


def test_bootstrap_with_unit_weights_is_the_point_estimate(faces):
    features, identities, groups, _ = faces
    counts = frvt.count_all_pairs(features, identities, groups, order=GROUP_NAMES, bins=BINS, tail_fmr=0.2)
    targets = (0.05, 0.01)
    point = frvt.error_rates(counts, targets)
    replicate = frvt.bootstrap(counts, targets, weights=np.ones((1, len(counts.identities)), dtype=int))
    pd.testing.assert_frame_equal(replicate.drop(columns="replicate"), point, check_dtype=False)


def test_bootstrap_fnmr_of_a_known_case():
    """300 people with two images each; the genuine pair of a known 30 % of them scores -1 (rejected at any
    threshold), the others +1, impostors near 0. A replicate's FNMR is then exactly the weighted share of
    those people, whose bootstrap distribution has standard deviation sqrt(p (1 - p) / n)."""
    rng = np.random.default_rng(0)
    n, dim, p = 300, 256, 0.3
    first = rng.standard_normal((n, dim))
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    rejected = np.zeros(n, dtype=bool)
    rejected[rng.choice(n, int(p * n), replace=False)] = True
    second = np.where(rejected[:, None], -first, first)
    features = np.stack([first, second], axis=1).reshape(2 * n, dim)
    identities = np.repeat([f"p{a:03d}" for a in range(n)], 2)
    counts = frvt.count_all_pairs(features, identities, np.full(2 * n, "all"), tail_fmr=0.05)
    weights = frvt.identity_weights(n, n_boot=2000, seed=1)
    replicates = frvt.bootstrap(counts, [0.01], weights=weights)
    fnmr = replicates.loc[replicates["group"] == "all", "fnmr"].to_numpy()
    np.testing.assert_allclose(fnmr, weights @ rejected / n)  # rows of `weights` follow counts.identities (sorted)
    assert fnmr.mean() == pytest.approx(p, abs=3 * math.sqrt(p * (1 - p) / n / 2000))
    assert fnmr.std() == pytest.approx(math.sqrt(p * (1 - p) / n), rel=0.1)


def test_bootstrap_refuses_targets_beyond_the_kept_tail(faces):
    features, identities, groups, _ = faces
    counts = frvt.count_all_pairs(features, identities, groups, bins=BINS, tail_fmr=0.01)
    with pytest.raises(ValueError, match="larger tail_fmr"):
        frvt.bootstrap(counts, [0.3], n_boot=2)


def test_audit_keeps_more_impostor_pairs_when_a_replicate_needs_them(faces):
    features, identities, groups, _ = faces
    counts = frvt.count_all_pairs(features, identities, groups, bins=BINS, tail_fmr=0.04)
    in_tail = set(counts.tail_identity_a) | set(counts.tail_identity_b)
    weights = np.zeros((1, len(counts.identities)), dtype=int)
    outside = [a for a in range(len(counts.identities)) if a not in in_tail][:2]
    weights[0, outside] = len(counts.identities) // 2  # a replicate made only of people absent from the tail
    with pytest.raises(ValueError, match="larger tail_fmr"):
        frvt.bootstrap(counts, [0.01], weights=weights)
    result = frvt.audit(features, identities, groups, target_fmrs=[0.01], weights=weights, bins=BINS, min_tail_pairs=0)
    assert result.counts.tail_fmr > 0.04 and len(result.replicates["replicate"].unique()) == 1


def test_audit_summarizes_with_intervals_and_ratios(faces):
    features, identities, groups, _ = faces
    result = frvt.audit(features, identities, groups, target_fmrs=(0.05, 0.01), order=GROUP_NAMES,
                        ratio=("B", "A"), n_boot=50, bins=BINS)
    rates = result.rates.set_index(["target_fmr", "group"])
    for column in ("fmr", "fnmr"):
        inside = rates[column].between(rates[f"{column}_lower"] - 1e-12, rates[f"{column}_upper"] + 1e-12)
        assert inside[rates[column].notna()].all()
    assert set(result.ratios["rate"]) == {"fmr", "fnmr"} and set(result.ratios["ratio"]) == {"B/A"}
    fmr_ratio = result.ratios.query("rate == 'fmr'").set_index("target_fmr")["estimate"]
    assert fmr_ratio.loc[0.05] == pytest.approx(rates.loc[(0.05, "B"), "fmr"] / rates.loc[(0.05, "A"), "fmr"])


# ------------------------------------------------------------------------------------ inputs
def test_inputs_are_checked():
    features = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="L2-normalized"):
        frvt.count_all_pairs(2 * features, ["a", "b", "c"], ["X", "X", "Y"])
    with pytest.raises(ValueError, match="not in `order`"):
        frvt.count_all_pairs(features, ["a", "b", "c"], ["X", "X", "Y"], order=["X"])
    with pytest.raises(ValueError, match="one entry per feature row"):
        frvt.count_all_pairs(features, ["a", "b"], ["X", "X", "Y"])
    with pytest.raises(ValueError, match="no image has a known group"):
        frvt.count_all_pairs(features, ["a", "b", "c"], [None, "unknown", np.nan])


# ------------------------------------------------------------------------------------ saved models
def write_devtest_npz(path, faces, seeds=(0, 1), heads=("softmax", "cosface")):
    """A tiny file in notebook 02's layout: files, identity and model:<head>-seed<seed> arrays."""
    features, identities, _, _ = faces
    rng = np.random.default_rng(7)
    arrays = {"files": np.array([f"{name}_{i:04d}.jpg" for i, name in enumerate(identities)]),
              "identity": identities.astype(str)}
    for head in heads:
        for seed in seeds:
            noisy = features + 0.3 * rng.standard_normal(features.shape).astype(np.float32)
            arrays[f"model:{head}-seed{seed}"] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    np.savez(path, **arrays)
    return arrays


def test_saved_model_embeddings_are_audited_per_model_and_summarized_over_seeds(faces, tmp_path):
    features, identities, groups, _ = faces
    arrays = write_devtest_npz(tmp_path / frvt.DEVTEST_EMBEDDINGS_FILE, faces)
    files, read_identities, models = frvt.read_model_embeddings(tmp_path / frvt.DEVTEST_EMBEDDINGS_FILE)
    assert sorted(models) == [("cosface", 0), ("cosface", 1), ("softmax", 0), ("softmax", 1)]
    np.testing.assert_array_equal(files, arrays["files"])
    np.testing.assert_array_equal(models[("cosface", 1)], arrays["model:cosface-seed1"])

    result = frvt.audit_models(models, read_identities, groups, target_fmrs=(0.05, 0.01), order=GROUP_NAMES,
                               ratio=("B", "A"), n_boot=40, bins=BINS)
    single = frvt.error_rates(frvt.count_all_pairs(models[("softmax", 1)], read_identities, groups,
                                                   order=GROUP_NAMES, bins=BINS), (0.05, 0.01))
    got = result.per_model.query("head == 'softmax' and seed == 1").reset_index(drop=True)
    np.testing.assert_allclose(got["fmr"], single["fmr"])
    np.testing.assert_allclose(got["fnmr"], single["fnmr"])
    means = result.per_model.groupby(["head", "target_fmr", "group"])[["fmr", "fnmr"]].mean()
    summary = result.per_head.set_index(["head", "target_fmr", "group"])
    np.testing.assert_allclose(summary.loc[means.index, "fmr"], means["fmr"])
    assert (summary["seeds"] == 2).all()
    ratios = result.ratios.query("rate == 'fmr'").set_index(["head", "target_fmr"])["estimate"]
    assert ratios.loc[("cosface", 0.05)] == pytest.approx(summary.loc[("cosface", 0.05, "B"), "fmr"]
                                                          / summary.loc[("cosface", 0.05, "A"), "fmr"])


def test_saved_model_file_errors(tmp_path):
    from lib.errors import DataError

    np.savez(tmp_path / "bad.npz", files=np.array(["a.jpg"]), identity=np.array(["a"]), **{"model:cosface": np.ones((1, 2))})
    with pytest.raises(DataError, match="model:<head>-seed<seed>"):
        frvt.read_model_embeddings(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", files=np.array(["a.jpg"]), **{"model:a-seed0": np.ones((1, 2))})
    with pytest.raises(DataError, match="lacks array"):
        frvt.read_model_embeddings(tmp_path / "short.npz")


def test_a_saved_audit_comes_back_only_for_the_same_runs_and_settings(faces, tmp_path):
    features, identities, groups, _ = faces
    arrays = write_devtest_npz(tmp_path / frvt.DEVTEST_EMBEDDINGS_FILE, faces)
    np.savez(tmp_path / "with_runs.npz", **arrays, runs=np.array(["softmax-seed1-bb", "cosface-seed0-aa"]))
    assert frvt.read_model_run_names(tmp_path / "with_runs.npz") == ["cosface-seed0-aa", "softmax-seed1-bb"]
    assert frvt.read_model_run_names(tmp_path / frvt.DEVTEST_EMBEDDINGS_FILE) == []
    _, read_identities, models = frvt.read_model_embeddings(tmp_path / frvt.DEVTEST_EMBEDDINGS_FILE)
    result = frvt.audit_models(models, read_identities, groups, target_fmrs=(0.05, 0.01), order=GROUP_NAMES,
                               ratio=("B", "A"), n_boot=40, bins=BINS)
    runs = ["softmax-seed0-x", "softmax-seed1-y", "cosface-seed0-z", "cosface-seed1-w"]
    settings = {"target_fmrs": [0.05, 0.01], "bootstrap_replicates": 40}
    frvt.save_audits(result, tmp_path, "audit", runs=runs, notes={**settings, "genuine_pairs": np.int64(12)})

    loaded, notes = frvt.load_audits(tmp_path, "audit", runs=runs[::-1], settings=settings)
    assert notes["genuine_pairs"] == 12 and isinstance(notes["genuine_pairs"], int)
    assert loaded.audits == {}
    for name in ("per_model", "per_head", "ratios", "det"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(result, name), check_dtype=False)
    assert frvt.load_audits(tmp_path, "audit", runs=runs[:3], settings=settings)[0] is None
    loaded, why = frvt.load_audits(tmp_path, "audit", runs=runs, settings={**settings, "bootstrap_replicates": 1000})
    assert loaded is None and "bootstrap_replicates 40 instead of 1000" in why
    loaded, why = frvt.load_audits(tmp_path, "other", runs=runs)
    assert loaded is None and "no saved audit" in why


def test_an_image_in_two_rows_is_refused_not_counted_as_a_genuine_pair(faces, tmp_path):
    """A duplicated image row was counted as a genuine pair of score 1 (and doubled all its other pairs)."""
    from lib.errors import DataError

    features, identities, groups, _ = faces
    arrays = write_devtest_npz(tmp_path / "ok.npz", faces)
    files = arrays["files"].copy()
    files[5] = files[3]
    np.savez(tmp_path / "repeated.npz", **{**arrays, "files": files})
    with pytest.raises(DataError, match=rf"repeated.npz: 1 image\(s\) listed more than once .*{files[3]} at rows \[3, 5\]"):
        frvt.read_model_embeddings(tmp_path / "repeated.npz")

    rows = np.r_[np.arange(len(features)), 3]  # row 3 again at the end
    with pytest.raises(ValueError, match=rf"{arrays['files'][3]} in rows \[3, {len(features)}\]"):
        frvt.audit(features[rows], identities[rows], groups[rows], target_fmrs=(0.05,), n_boot=5, bins=BINS,
                   images=arrays["files"][rows])
    models = {("cosface", 0): features[rows]}
    with pytest.raises(ValueError, match="occur in more than one row"):
        frvt.audit_models(models, identities[rows], groups[rows], target_fmrs=(0.05,), n_boot=5, bins=BINS,
                          images=arrays["files"][rows])


def test_an_interrupted_save_never_shows_one_runs_audit_under_anothers_names(faces, tmp_path, monkeypatch):
    """save_audits replaced the four CSVs, then the manifest: an interruption in between made
    load_audits(runs=A) return run B's numbers as A's audit."""
    import dataclasses

    features, identities, groups, _ = faces
    write_devtest_npz(tmp_path / frvt.DEVTEST_EMBEDDINGS_FILE, faces)
    _, read_identities, models = frvt.read_model_embeddings(tmp_path / frvt.DEVTEST_EMBEDDINGS_FILE)
    audit_a = frvt.audit_models(models, read_identities, groups, target_fmrs=(0.05, 0.01), order=GROUP_NAMES,
                                ratio=("B", "A"), n_boot=40, bins=BINS)
    audit_b = dataclasses.replace(audit_a, per_head=audit_a.per_head.assign(fmr=audit_a.per_head["fmr"] * 3))
    runs_a, runs_b = ["cosface-seed0-a"], ["cosface-seed0-b"]
    frvt.save_audits(audit_a, tmp_path, "audit", runs=runs_a, notes={})
    assert frvt.load_audits(tmp_path, "audit", runs=runs_a)[0] is not None

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the kernel interrupted after the tables, before the manifest

    monkeypatch.setattr(frvt, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        frvt.save_audits(audit_b, tmp_path, "audit", runs=runs_b, notes={})
    monkeypatch.undo()
    loaded, why = frvt.load_audits(tmp_path, "audit", runs=runs_a)
    assert loaded is None and "no saved audit" in why

    # Tables replaced under an intact manifest (a copy of another run's CSV, a save by older code).
    frvt.save_audits(audit_a, tmp_path, "audit", runs=runs_a, notes={})
    audit_b.per_head.to_csv(tmp_path / "audit_rates.csv", index=False)
    loaded, why = frvt.load_audits(tmp_path, "audit", runs=runs_a)
    assert loaded is None and "audit_rates.csv is not the one its manifest (audit_audit.json) names" in why
    frvt.save_audits(audit_a, tmp_path, "audit", runs=runs_a, notes={})
    (tmp_path / "audit_det.csv").unlink()
    assert "audit_det.csv is missing" in frvt.load_audits(tmp_path, "audit", runs=runs_a)[1]


def test_describe_lists_each_head_and_target_with_its_rates_intervals_and_ratios():
    rows = []
    for head, (female, male) in {"a": (0.004, 0.001), "b": (0.002, 0.002)}.items():
        for group, fmr in (("Female", female), ("Male", male), ("overall", 0.0015)):
            rows.append({"head": head, "target_fmr": 1e-3, "group": group, "threshold": 0.5, "fmr": fmr,
                         "fmr_lower": fmr / 2, "fmr_upper": fmr * 2, "fnmr": 0.8, "fnmr_lower": 0.7, "fnmr_upper": 0.9})
    ratios = pd.DataFrame([{"head": "a", "target_fmr": 1e-3, "rate": "fmr", "ratio": "Female/Male", "estimate": 4.0,
                            "lower": 2.5, "upper": 6.25},
                           {"head": "b", "target_fmr": 1e-3, "rate": "fmr", "ratio": "Female/Male",
                            "estimate": np.nan, "lower": np.nan, "upper": np.nan}])
    text = frvt.describe(pd.DataFrame(rows), ratios, ["Female", "Male"])
    lines = text.split("\n")
    assert len(lines) == 2 and all(line.startswith("- `") for line in lines)
    assert lines[0].startswith("- `a` at overall FMR 0.001 (threshold 0.500)")
    assert "FMR ratio Female/Male 4.00 [2.50, 6.25]" in lines[0]
    assert "FMR ratio Female/Male undefined" in lines[1]
    assert "overall" not in lines[0].split("(threshold")[1]  # only the groups asked for


def test_rates_table_shows_each_rate_with_its_interval_and_the_counts():
    rates = pd.DataFrame({"target_fmr": [1e-3, 1e-3], "group": ["Male", "cross-group"], "threshold": [0.92612, 0.92612],
                          "n_genuine": [232444, 0], "fnmr": [0.0551, np.nan], "fnmr_lower": [0.0342, np.nan],
                          "fnmr_upper": [0.0803, np.nan], "n_impostor": [52427009, 30388743],
                          "fmr": [0.00118, 0.00019], "fmr_lower": [0.00107, 0.00012], "fmr_upper": [0.00128, 0.00027]})
    table = frvt.rates_table(rates)
    assert list(table.index) == [(1e-3, "Male"), (1e-3, "cross-group")]
    assert table.loc[(1e-3, "Male")].to_dict() == {"threshold": "0.926", "FMR": "0.0012 [0.0011, 0.0013]",
                                                    "FNMR": "0.055 [0.034, 0.08]", "genuine pairs": "232,444",
                                                    "impostor pairs": "52,427,009"}
    assert table.loc[(1e-3, "cross-group"), "FNMR"] == "n/a"
    per_head = rates.assign(head="sphereface", seeds=3, fmr_seed_min=[0.0011, 0.00018], fmr_seed_max=[0.0013, 0.0002],
                            fnmr_seed_min=[0.05, np.nan], fnmr_seed_max=[0.06, np.nan])
    table = frvt.rates_table(per_head)
    assert table.index.names == ["head", "target_fmr", "group"]
    assert table.loc[("sphereface", 1e-3, "Male"), "FMR over seeds"] == "0.0011 to 0.0013"
    assert table.loc[("sphereface", 1e-3, "cross-group"), "FNMR over seeds"] == "n/a"
    assert table.loc[("sphereface", 1e-3, "Male"), "seeds"] == "3"


def test_det_plot_on_probit_axes_keeps_fnmrs_near_one_apart():
    """Issue 26: 04's trained-heads DET had every curve near FNMR = 1 on log axes. On probit axes (02's DET)
    FNMR 0.99 and 0.999 lie 0.76 normal deviates apart, where log10 separates them by 0.004."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    fmr = np.array([0.0, 1e-3, 1e-2, 0.1, 0.5])
    curves = pd.DataFrame({"group": ["male"] * 5 + ["female"] * 5, "threshold": np.tile(np.arange(5), 2),
                           "fmr": np.tile(fmr, 2), "fnmr": [1.0, 0.99, 0.95, 0.8, 0.4, 1.0, 0.999, 0.99, 0.9, 0.5]})
    points = pd.DataFrame({"group": ["male", "female"], "target_fmr": [1e-2, 1e-2], "fmr": [1e-2, 1e-2],
                           "fnmr": [0.95, 0.99]})
    fig, ax = plt.subplots()
    frvt.det_plot(curves, points, ax=ax, scale="probit")
    male, female = ax.lines[0], ax.lines[1]
    np.testing.assert_allclose(female.get_xdata(), stats.norm.ppf(fmr[1:]))  # FMR 0 and FNMR 1 cannot be drawn
    np.testing.assert_allclose(female.get_ydata(), stats.norm.ppf([0.999, 0.99, 0.9, 0.5]))
    assert female.get_ydata()[0] - male.get_ydata()[0] > 0.7
    low, high = ax.get_ylim()
    assert low < stats.norm.ppf(0.4) and high > stats.norm.ppf(0.999)  # every drawn point inside
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "99%" in labels and "99.9%" in labels and "probit" in ax.get_ylabel()
    positions = [float(t) for t in ax.get_yticks()]
    assert min(np.diff(positions)) >= (high - low) / 8 - 1e-9  # neighbouring labels never touch
    marker = [line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata()) == 1]
    assert [float(line.get_ydata()[0]) for line in marker] == pytest.approx(list(stats.norm.ppf([0.95, 0.99])))
    fig_log, ax_log = plt.subplots()
    frvt.det_plot(curves, points, ax=ax_log)  # the default stays log axes
    assert ax_log.get_yscale() == "log"
    with pytest.raises(ValueError, match="probit"):
        frvt.det_plot(curves, ax=ax, scale="linear")
    plt.close("all")


# ------------------------------------------------------------------------------------ comparators (issue 24)
def raw_faces(seed=0, n_identities=40, dim=12, spread=0.7, scale_a=0.6):
    """Raw (unnormalized) descriptors whose norms differ by group: group A's are scaled by ``scale_a``."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, n_identities)
    identities = np.repeat(np.arange(n_identities), sizes)
    centres = rng.standard_normal((n_identities, dim))
    features = centres[identities] + spread * rng.standard_normal((len(identities), dim))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    groups = np.array(GROUP_NAMES, dtype=object)[np.arange(n_identities) % 2][identities]
    features *= np.where(groups == "A", scale_a, 1.0)[:, None] * rng.uniform(0.9, 1.1, (len(identities), 1))
    return features.astype(np.float32), np.array([f"person{k:02d}" for k in identities]), groups


def distance_pairs(features, identities, groups) -> pd.DataFrame:
    """Every unordered pair with its float64 Euclidean distance from scikit-learn (the reference)."""
    from sklearn.metrics.pairwise import euclidean_distances

    distances = euclidean_distances(np.asarray(features, dtype=np.float64))
    pairs = pair_table(np.eye(len(features)), identities, groups)  # categories and genuine flags
    return pairs.assign(score=-distances[pairs["i"], pairs["j"]], distance=distances[pairs["i"], pairs["j"]])


def test_euclidean_comparator_counts_raw_distances_as_scikit_learn_computes_them():
    """The old audit could only score L2-normalized features by cosine; dlib's users compare raw descriptors by
    Euclidean distance. Counts, thresholds and rates here are checked against sklearn's euclidean_distances."""
    bins = frvt.euclidean_bins(2.0, count=2**8)  # edges every 0.01
    for seed in range(50):  # the first seed whose distances all lie 1e-6 away from every bin edge
        features, identities, groups = raw_faces(seed, n_identities=25)
        pairs = distance_pairs(features, identities, groups)
        if np.abs(pairs["score"].to_numpy()[:, None] - bins.edges[None, :]).min() > 1e-6:
            break
    else:
        raise AssertionError("no seed keeps every distance away from the bin edges")
    counts = frvt.count_all_pairs(features, identities, groups, order=GROUP_NAMES, bins=bins, block_rows=13,
                                  comparator="euclidean")
    pairs = pairs.assign(bin=reference_bins(pairs["score"], bins.edges))
    for c, name in enumerate(counts.categories):
        for genuine, table in ((True, counts.genuine), (False, counts.impostor)):
            rows = pairs[(pairs["category"] == name) & (pairs["genuine"] == genuine)]
            np.testing.assert_array_equal(table[c], np.bincount(rows["bin"], minlength=bins.count))

    targets = (0.1, 0.02)
    table = frvt.error_rates(counts, targets)
    fixed = frvt.error_rates_at(counts, [0.6, 1.0])
    distance, genuine = pairs["distance"].to_numpy(), pairs["genuine"].to_numpy()
    for target in targets:
        rows = table[table["target_fmr"] == target].set_index("group")
        threshold = rows["threshold"].iloc[0]  # a distance: match when distance < threshold
        assert np.mean(distance[~genuine] < threshold) <= target
        assert np.mean(distance[~genuine] < threshold + bins.edges[1] - bins.edges[0]) > target  # the largest such
        for name in (*counts.categories, "overall"):
            chosen = pairs if name == "overall" else pairs[pairs["category"] == name]
            imp, gen = chosen[~chosen["genuine"]], chosen[chosen["genuine"]]
            assert rows.loc[name, "false_matches"] == (imp["distance"] < threshold).sum()
            assert rows.loc[name, "false_non_matches"] == (gen["distance"] >= threshold).sum()
    for threshold in (0.6, 1.0):
        rows = fixed[fixed["threshold"] == threshold].set_index("group")
        for name in (*counts.categories, "overall"):
            chosen = pairs if name == "overall" else pairs[pairs["category"] == name]
            imp, gen = chosen[~chosen["genuine"]], chosen[chosen["genuine"]]
            assert rows.loc[name, "false_matches"] == (imp["distance"] < threshold).sum()
            assert rows.loc[name, "false_non_matches"] == (gen["distance"] >= threshold).sum()
    # the DET curve: FMR and 1 - FNMR at each distance threshold are scikit-learn's roc_curve on -distance
    from sklearn.metrics import roc_curve

    fpr, tpr, roc_thresholds = roc_curve(genuine, -distance, drop_intermediate=False)
    overall = frvt.det_curves(counts).query("group == 'overall'")
    for row in overall.itertuples():
        i = int(np.sum(roc_thresholds > -row.threshold)) - 1  # "distance < t" is "score >= the next score above -t"
        assert (row.fmr, 1 - row.fnmr) == pytest.approx((fpr[i], tpr[i]) if i >= 0 else (0, 0))


def test_a_fixed_threshold_must_be_a_bin_edge_and_euclidean_bins_make_dlibs_one():
    bins = frvt.euclidean_bins(1.9)
    assert bins.low == pytest.approx(-2.56) and bins.high == 0
    assert bins.edges[bins.edge_index(-0.6)] == pytest.approx(-0.6, abs=1e-12)
    with pytest.raises(ValueError, match="not an edge"):
        frvt.ScoreBins(64).edge_index(0.01)
    features, identities, groups = raw_faces()
    with pytest.raises(ValueError, match="bins must end at 0"):
        frvt.count_all_pairs(features, identities, groups, bins=frvt.ScoreBins(64), comparator="euclidean")
    with pytest.raises(ValueError, match="comparator must be one of"):
        frvt.count_all_pairs(features, identities, groups, comparator="manhattan")
    with pytest.raises(ValueError, match="comparator='euclidean'"):
        frvt.count_all_pairs(features, identities, groups)  # raw descriptors refused by the cosine


def test_comparators_disagree_when_descriptor_norms_differ_by_group():
    """Group A's descriptors are 0.6 times as long as B's, the directions alike: the cosine serves both groups
    about equally, the Euclidean distance lets many more of A's impostor pairs match (its distances shrink)."""
    features, identities, groups = raw_faces(seed=1, n_identities=60, scale_a=0.6)
    audits = frvt.audit_comparators(features, identities, groups, comparators={"euclidean": [0.6], "cosine": []},
                                    target_fmrs=[0.05], order=GROUP_NAMES, ratio=("A", "B"), n_boot=40,
                                    min_tail_pairs=0, bins={"euclidean": frvt.euclidean_bins(2.5, count=2**14)})
    ratio = {c: a.ratios.set_index("rate").loc["fmr", "estimate"] for c, a in audits.items()}
    assert ratio["euclidean"] > 5 and 0.33 < ratio["cosine"] < 3
    assert audits["euclidean"].rates["threshold"].iloc[0] != pytest.approx(audits["cosine"].rates["threshold"].iloc[0])
    # the fixed threshold's rates, with intervals over the same replicates
    fixed = audits["euclidean"].fixed.set_index("group")
    assert fixed.loc["A", "fmr"] > fixed.loc["B", "fmr"]
    assert (fixed["replicates"] == 40).all() and fixed.loc["A", "fmr_lower"] <= fixed.loc["A", "fmr"] <= fixed.loc["A", "fmr_upper"]
    norms = frvt.descriptor_norms(features, groups, GROUP_NAMES).set_index("group")
    assert norms.loc["A", "median"] == pytest.approx(0.6, rel=0.1) and norms.loc["B", "median"] == pytest.approx(1, rel=0.1)
    side = frvt.comparator_side_by_side(audits, GROUP_NAMES)
    assert ("euclidean", "FMR") in side.columns and ("overall FMR 0.05", "ratio A/B") in side.index
    test = frvt.compare_comparator_ratios(audits, "euclidean", "cosine", numerator="A", denominator="B")
    fmr_row = test.set_index("rate").loc["fmr"]
    assert fmr_row["ratio_of_ratios"] == pytest.approx(ratio["euclidean"] / ratio["cosine"])
    assert fmr_row["lower"] > 1 and fmr_row["p_value"] == pytest.approx(2 / 41)


def test_fixed_threshold_replicates_equal_materialized_resamples(faces):
    features, identities, groups, _ = faces
    counts = frvt.count_all_pairs(features, identities, groups, order=GROUP_NAMES, bins=BINS, tail_fmr=1.0)
    threshold = float(BINS.edges[40])
    weights = frvt.identity_weights(len(counts.identities), n_boot=3, seed=5)
    replicates = frvt.bootstrap_at(counts, [threshold], weights=weights)
    unit = frvt.bootstrap_at(counts, [threshold], weights=np.ones((1, len(counts.identities)), dtype=int))
    pd.testing.assert_frame_equal(unit.drop(columns="replicate"), frvt.error_rates_at(counts, [threshold]),
                                  check_dtype=False)
    for r, w in enumerate(weights):
        rows = []
        for a, name in enumerate(counts.identities):
            for copy in range(w[a]):
                rows += [(m, f"{name}#{copy}") for m in np.flatnonzero(identities == name)]
        index, person = np.array([i for i, _ in rows]), np.array([p for _, p in rows])
        pairs = pair_table(features[index], person, groups[index])
        other_copy = (identities[index][pairs["i"]] == identities[index][pairs["j"]]) & ~pairs["genuine"].to_numpy()
        pairs = pairs[~other_copy]
        got = replicates[replicates["replicate"] == r].set_index("group")
        for name, chosen in [*pairs.groupby("category"), ("overall", pairs)]:
            imp, gen = chosen[~chosen["genuine"]], chosen[chosen["genuine"]]
            passes = reference_bins(imp["score"], BINS.edges) >= 40
            rejected = reference_bins(gen["score"], BINS.edges) < 40
            assert (got.loc[name, "false_matches"], got.loc[name, "false_non_matches"]) == (passes.sum(), rejected.sum())


# ------------------------------------------------------------------------------------ prolific identities
def test_prolific_identities_capped_and_left_out_against_brute_force():
    """One person with 30 images supplies 435 genuine pairs, more than everyone else in their group together."""
    rng = np.random.default_rng(4)
    features, identities, groups = raw_faces(seed=2, n_identities=30)
    big = rng.standard_normal(features.shape[1])
    big_faces = big + 1.2 * rng.standard_normal((30, features.shape[1]))
    features = np.vstack([features, big_faces]).astype(np.float32)
    identities = np.r_[identities, ["zz_prolific"] * 30]
    groups = np.r_[groups, ["B"] * 30].astype(object)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    result = frvt.audit(unit, identities, groups, target_fmrs=[0.05], order=GROUP_NAMES, ratio=("A", "B"),
                        n_boot=5, bins=BINS, min_tail_pairs=0)
    ranked = frvt.identity_pairs(result.counts)
    pairs = pair_table(unit, identities, groups)
    genuine_b = pairs[pairs["genuine"] & (pairs["category"] == "B")]
    assert ranked.iloc[0][["identity", "group", "images", "genuine_pairs"]].tolist() == ["zz_prolific", "B", 30, 435]
    assert ranked.iloc[0]["share_of_group"] == pytest.approx(435 / len(genuine_b))

    cap, top = 6, 2
    effect = frvt.prolific_identity_effect(result, cap=cap, top=top, ratio=("A", "B"))
    threshold = result.rates["threshold"].iloc[0]
    rows = effect.set_index(["variant", "group"])
    everything = rows.loc[("all pairs", "B")]
    assert everything["fnmr"] == pytest.approx(result.rates.set_index("group").loc["B", "fnmr"])
    # capped: each person's genuine pairs weigh min(1, cap / pairs)
    per_person = genuine_b.assign(person=identities[genuine_b["i"]], rejected=genuine_b["score"] <= threshold)
    sizes = per_person.groupby("person").size()
    weight = np.minimum(1, cap / sizes)
    expected_n = (sizes * weight).sum()
    expected_fnmr = (per_person.groupby("person")["rejected"].sum() * weight).sum() / expected_n
    capped = rows.loc[(f"genuine pairs capped at {cap} per identity", "B")]
    assert capped["n_genuine"] == pytest.approx(expected_n) and capped["fnmr"] == pytest.approx(expected_fnmr)
    assert capped["fmr"] == pytest.approx(everything["fmr"])  # impostor pairs untouched
    # without the top identities: the same rates as an audit of the images without them, at the same threshold
    dropped = set(ranked["identity"].head(top))
    keep = ~np.isin(identities, list(dropped))
    reduced = frvt.error_rates_at(frvt.count_all_pairs(unit[keep], identities[keep], groups[keep],
                                                       order=GROUP_NAMES, bins=BINS), [threshold]).set_index("group")
    without = rows.xs(f"without the {top} identities with the most genuine pairs", level="variant")
    for group in ("A", "B", "overall"):
        assert without.loc[group, "fmr"] == pytest.approx(reduced.loc[group, "fmr"])
        assert without.loc[group, "fnmr"] == pytest.approx(reduced.loc[group, "fnmr"])
    assert without.loc["ratio A/B", "fmr"] == pytest.approx(reduced.loc["A", "fmr"] / reduced.loc["B", "fmr"])


# ------------------------------------------------------------------------------------ paired ratio test
def head_models(faces_n=60, seed=0):
    features, identities, groups = clustered_faces(seed, n_identities=faces_n)
    crowded = features.copy()
    shared = np.ones(features.shape[1], dtype=np.float32) / np.sqrt(features.shape[1])
    crowded[groups == "A"] += 0.6 * shared  # head "b": group A's people all look alike, its impostors match
    crowded /= np.linalg.norm(crowded, axis=1, keepdims=True)
    return features, crowded, identities, groups


def test_paired_ratio_test_of_identical_heads_finds_nothing_and_of_different_heads_resolves():
    features, crowded, identities, groups = head_models()
    models = {("a", 0): features, ("a", 1): features, ("same", 0): features, ("same", 1): features,
              ("b", 0): crowded, ("b", 1): crowded}
    result = frvt.audit_models(models, identities, groups, target_fmrs=(0.1,), order=GROUP_NAMES, ratio=("A", "B"),
                               n_boot=200, bins=BINS)
    tests = frvt.compare_head_ratios(result, [("same", "a"), ("b", "a")], ratio=("A", "B"))
    same, different = tests.set_index("head").loc["same"], tests.set_index("head").loc["b"]
    assert same["ratio_of_ratios"] == pytest.approx(1) and same["lower"] == pytest.approx(1) == same["upper"]
    assert same["p_value"] == 1 and same["verdict"] == "not resolved"
    ratios = result.ratios.query("rate == 'fmr'").set_index("head")["estimate"]
    assert different["head_ratio"] == pytest.approx(ratios["b"]) and different["reference_ratio"] == pytest.approx(ratios["a"])
    assert different["ratio_of_ratios"] == pytest.approx(ratios["b"] / ratios["a"]) and different["lower"] > 1
    # every usable replicate has the difference: p = 2 / (B + 1), the smallest a two-sided bootstrap p can be
    assert different["replicates"] >= 150 and different["p_value"] == pytest.approx(2 / (different["replicates"] + 1))
    assert different["verdict"] == "higher"
    assert different["p_adjusted"] == pytest.approx(min(1, 2 * different["p_value"]))  # Holm over two tests
    # the interval is that of the replicates' ratio of ratios, each head's ratio from the same resampled people
    means = result.replicate_means.query("target_fmr == 0.1").set_index(["head", "replicate", "group"])["fmr"]
    per_replicate = ((means.loc["b"].unstack()["A"] / means.loc["b"].unstack()["B"])
                     / (means.loc["a"].unstack()["A"] / means.loc["a"].unstack()["B"])).dropna()
    assert different["lower"] == pytest.approx(np.quantile(per_replicate, 0.025), rel=1e-9)
    with pytest.raises(ValueError, match="no head"):
        frvt.compare_head_ratios(result, [("c", "a")], ratio=("A", "B"))


def test_saved_tables_come_back_only_as_written(tmp_path, monkeypatch):
    tables = {"rates": pd.DataFrame({"comparator": ["euclidean", "cosine"], "fmr": [0.1, 0.2]}),
              "norms": pd.DataFrame({"group": ["A"], "median": [0.6]})}
    frvt.save_tables(tables, tmp_path, "04_frvt_enc", notes={"encoder": "enc"})
    loaded, notes = frvt.read_tables(tmp_path, "04_frvt_enc", required=["rates"])
    assert notes == {"encoder": "enc"} and set(loaded) == {"rates", "norms"}
    pd.testing.assert_frame_equal(loaded["rates"], tables["rates"])
    assert frvt.read_tables(tmp_path, "04_frvt_enc", required=["prolific"])[0] is None

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(frvt, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        frvt.save_tables({**tables, "rates": tables["rates"].assign(fmr=0.9)}, tmp_path, "04_frvt_enc", notes={})
    monkeypatch.undo()
    assert "no saved audit" in frvt.read_tables(tmp_path, "04_frvt_enc")[1]


def test_a_saved_audit_keeps_its_ratio_tests_and_reads_without_them(faces, tmp_path):
    features, crowded, identities, groups = head_models(faces_n=30)
    models = {("a", 0): features, ("b", 0): crowded}
    result = frvt.audit_models(models, identities, groups, target_fmrs=(0.05,), order=GROUP_NAMES, ratio=("A", "B"),
                               n_boot=30, bins=BINS)
    result.extra["ratio_tests"] = frvt.compare_head_ratios(result, [("b", "a")], ratio=("A", "B"))
    frvt.save_audits(result, tmp_path, "audit", runs=["r"], notes={})
    loaded, _ = frvt.load_audits(tmp_path, "audit", runs=["r"])
    pd.testing.assert_frame_equal(loaded.extra["ratio_tests"], result.extra["ratio_tests"], check_dtype=False)
    assert loaded.replicate_means is None
    (tmp_path / "audit_ratio_tests.csv").write_text("tampered\n")
    assert "audit_ratio_tests.csv is not the one" in frvt.load_audits(tmp_path, "audit", runs=["r"])[1]


def test_descriptions_of_fixed_thresholds_and_ratio_tests_quote_their_tables():
    fixed = pd.DataFrame({"threshold": [0.6] * 3, "group": ["Female", "Male", "overall"], "fmr": [0.02, 0.004, 0.006],
                          "fmr_lower": [0.015, 0.003, 0.005], "fmr_upper": [0.03, 0.005, 0.007], "fnmr": [0.01, 0.02, 0.018],
                          "fnmr_lower": [0.005, 0.01, 0.01], "fnmr_upper": [0.02, 0.03, 0.025]})
    ratios = pd.DataFrame([{"threshold": 0.6, "rate": "fmr", "ratio": "Female/Male", "estimate": 5.0, "lower": 3.2,
                            "upper": 7.7}])
    text = frvt.describe_fixed(fixed, ratios, ["Female", "Male"], "euclidean")
    assert text == ("- at the fixed euclidean threshold 0.6 (overall FMR 0.006 [0.005, 0.007]): FMR Female 0.02 "
                    "[0.015, 0.03], Male 0.004 [0.003, 0.005]; FNMR Female 0.01 [0.005, 0.02], Male 0.02 [0.01, 0.03]; "
                    "FMR ratio Female/Male 5.00 [3.20, 7.70].")
    tests = pd.DataFrame([{"head": "cosface", "reference": "softmax", "target_fmr": 1e-3, "rate": "fmr",
                           "ratio": "Female/Male", "head_ratio": 2.49, "reference_ratio": 5.17, "ratio_of_ratios": 0.48,
                           "lower": 0.31, "upper": 0.74, "p_value": 0.002, "p_adjusted": 0.01, "verdict": "lower"}])
    assert frvt.describe_ratio_tests(tests) == (
        "- `cosface` against `softmax` at overall FMR 0.001: FMR ratio Female/Male 2.49 vs 5.17, ratio of ratios 0.48 "
        "[0.31, 0.74], p = 0.002 (Holm 0.01): lower.")


def test_a_ratio_test_without_any_finite_replicate_says_so():
    """A group without false matches in every replicate (a tiny set) has no ratio to compare: no verdict."""
    replicates = pd.DataFrame({"replicate": [0, 0, 1, 1], "target_fmr": 1e-3, "group": ["A", "B"] * 2,
                               "fmr": [0.01, 0.0, 0.02, 0.0]})
    point = replicates[replicates["replicate"] == 0].drop(columns="replicate")
    row = frvt.paired_ratio_test(replicates, replicates, point, point, numerator="A", denominator="B").iloc[0]
    assert row["replicates"] == 0 and np.isnan(row["p_value"]) and np.isnan(row["lower"])
