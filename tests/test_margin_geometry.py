"""`lib.margin_geometry` against independent references.

The lower bounds on m are checked against the SphereFace paper's closed forms (Properties 2 and 3
and their proofs), which the module itself never uses; the decision arcs against a brute-force
classification of a dense grid of directions with ``lib.losses.sphereface_psi`` (the A-Softmax
decision rule psi(theta_i) > cos(theta_j)); the intra / inter-class angles against all pairwise
angles of those grid points. The toy trainer is checked for determinism, shapes, the held-out split,
and for the effect the paper reports (a margin makes classes angularly more compact).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lib import margin_geometry as G  # noqa: E402
from lib.errors import DataError  # noqa: E402
from lib.losses import sphereface_psi  # noqa: E402

TWO_PLUS_SQRT3 = 2 + math.sqrt(3)


# ------------------------------------------------------------------------------------------------
# References written out from the paper
# ------------------------------------------------------------------------------------------------
def paper_binary_required_m(theta12: np.ndarray) -> np.ndarray:
    """Smallest m solving the paper's two binary inequalities for one theta12.

    theta12 <= (m-1)pi/m:  theta12/(m-1) + theta12/(m+1) <= (m-1)theta12/(m+1)  <=>  m >= 2 + sqrt(3)
    theta12 >  (m-1)pi/m:  (2pi - theta12)/(m+1) + theta12/(m+1) <= (m-1)theta12/(m+1)  <=>  m >= 1 + 2pi/theta12
    The first regime holds at m = 2 + sqrt(3) iff theta12 <= (sqrt(3) - 1) pi.
    """
    return np.where(theta12 <= (math.sqrt(3) - 1) * math.pi, TWO_PLUS_SQRT3, 1 + 2 * math.pi / theta12)


def brute_force_owner(weight_angles: np.ndarray, m: int, directions: np.ndarray) -> np.ndarray:
    """Class owning each direction under A-Softmax (psi(theta_i) > cos theta_j for all j != i), or -1."""
    cosines = torch.from_numpy(np.cos(directions[:, None] - weight_angles[None, :]))  # (P, K) float64
    psi = sphereface_psi(cosines, m)
    k = len(weight_angles)
    wins = torch.stack([
        (psi[:, i : i + 1] > cosines[:, [j for j in range(k) if j != i]]).all(dim=1) for i in range(k)
    ], dim=1)
    assert int(wins.sum(dim=1).max()) <= 1, "A-Softmax regions must be disjoint"
    return torch.where(wins.any(dim=1), wins.float().argmax(dim=1), torch.tensor(-1)).numpy()


def arc_owner(weight_angles: np.ndarray, m: float, directions: np.ndarray) -> np.ndarray:
    backward, forward = G.decision_arcs(weight_angles, m)
    # signed offset of each direction from each weight, in (-pi, pi]
    offset = np.remainder(directions[:, None] - weight_angles[None, :] + math.pi, 2 * math.pi) - math.pi
    inside = (offset > -backward) & (offset < forward)
    assert inside.sum(axis=1).max() <= 1
    return np.where(inside.any(axis=1), inside.argmax(axis=1), -1)


# ------------------------------------------------------------------------------------------------
# The lower bounds
# ------------------------------------------------------------------------------------------------
def test_binary_bound_is_two_plus_sqrt3():
    bound = G.binary_margin_bound(num_angles=360)
    assert bound.value == pytest.approx(TWO_PLUS_SQRT3, abs=1e-3)
    assert bound.value == pytest.approx(TWO_PLUS_SQRT3, abs=1e-9)  # the search is exact, not just close
    # the worst case is a plateau of small and medium angles, ending at (sqrt(3) - 1) * 180 = 131.8 degrees
    assert np.degrees(bound.worst_angles()).max() == pytest.approx(131.77, abs=0.5)


def test_multiclass_bound_is_three_for_every_class_count():
    bound = G.multiclass_margin_bound(range(3, 11))
    assert bound.value == pytest.approx(3.0, abs=1e-3)
    np.testing.assert_allclose(bound.required, 3.0, atol=1e-9)
    np.testing.assert_allclose(bound.angles, 2 * np.pi / np.arange(3, 11))


def test_required_margin_follows_the_papers_inequalities_for_every_angle():
    bound = G.binary_margin_bound(num_angles=180)
    np.testing.assert_allclose(bound.required, paper_binary_required_m(bound.angles), rtol=0, atol=1e-9)
    # two opposite weights are the K = 2 evenly spaced case: m = 3, like the multi-class bound
    assert bound.required[-1] == pytest.approx(3.0, abs=1e-9)


def test_binary_arcs_match_the_papers_extents():
    theta12 = math.radians(60)
    for m in (2.0, 3.0, 4.0, 2.5):
        backward, forward = G.decision_arcs([0.0, theta12], m)
        # class 1 reaches theta12/(m+1) towards w2 and theta12/(m-1) away from it (theta12 <= (m-1)pi/m)
        assert forward[0] == pytest.approx(theta12 / (m + 1), abs=1e-12)
        assert backward[0] == pytest.approx(theta12 / (m - 1), abs=1e-12)
    # wide pair, second regime: the far side is bounded past the antipode, at (2pi - theta12)/(m+1)
    theta12, m = math.radians(170), 4.0
    backward, forward = G.decision_arcs([0.0, theta12], m)
    assert backward[0] == pytest.approx((2 * math.pi - theta12) / (m + 1), abs=1e-12)
    assert forward[0] == pytest.approx(theta12 / (m + 1), abs=1e-12)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_decision_arcs_agree_with_brute_force_a_softmax_classification(m):
    rng = np.random.default_rng(m)
    directions = np.linspace(-math.pi, math.pi, 40_001)[:-1] + 1e-5  # offset: no point sits on a weight
    for k in (2, 3, 5):
        weights = np.sort(rng.uniform(-math.pi, math.pi, size=k))
        expected = brute_force_owner(weights, m, directions)
        got = arc_owner(weights, m, directions)
        mismatch = directions[expected != got]
        # only points within rounding of an arc end may differ
        backward, forward = G.decision_arcs(weights, m)
        ends = np.concatenate([weights - backward, weights + forward])
        assert np.all(G.circle_distance(mismatch[:, None], ends[None, :]).min(axis=1) < 1e-9), (k, mismatch[:5])


def test_separation_angles_match_pairwise_angles_of_sampled_features():
    weights = np.array([0.3, 1.4, 2.2, 4.0])
    m = 2.5
    directions = np.linspace(-math.pi, math.pi, 7_201)[:-1]
    owner = arc_owner(weights, m, directions)
    points = {c: directions[owner == c] for c in range(len(weights))}
    intra = max(G.circle_distance(p[:, None], p[None, :]).max() for p in points.values())
    inter = min(G.circle_distance(points[a][:, None], points[b][None, :]).min()
                for a in points for b in points if a < b)
    max_intra, min_inter = G.angular_separation(weights, m)
    step = 2 * math.pi / 7_200
    assert max_intra == pytest.approx(intra, abs=2 * step)
    assert min_inter == pytest.approx(inter, abs=2 * step)


def test_geometry_is_vectorized_and_rotation_invariant():
    configurations = np.array([[0.0, 1.0, 2.5], [0.7, 1.7, 3.2], [-2.0, -1.0, 0.5]])  # 2nd, 3rd: rotations
    required = G.minimal_separating_margin(configurations)
    assert required.shape == (3,)
    np.testing.assert_allclose(required, required[0], atol=1e-9)
    one_by_one = [float(G.minimal_separating_margin(c)) for c in configurations]
    np.testing.assert_allclose(required, one_by_one, atol=1e-12)


def test_geometry_rejects_bad_input():
    with pytest.raises(ValueError, match="same way"):
        G.decision_arcs([0.0, 2 * math.pi], 4)
    with pytest.raises(ValueError, match="at least 2"):
        G.decision_arcs([0.0], 4)
    with pytest.raises(ValueError, match=">= 1"):
        G.angular_separation([0.0, 1.0], 0.5)


def test_circle_distance_is_the_angle_between_unit_vectors():
    a, b = np.random.default_rng(0).uniform(-10, 10, size=(2, 500))
    reference = np.arccos(np.clip(np.cos(a) * np.cos(b) + np.sin(a) * np.sin(b), -1, 1))
    np.testing.assert_allclose(G.circle_distance(a, b), reference, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Toy embeddings
# ------------------------------------------------------------------------------------------------
def pattern_images(num_classes=4, per_class=10, size=16, seed=0):
    """Class-dependent smooth colour patterns plus pixel noise, uint8 (N, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.nn.functional.interpolate(torch.rand(num_classes, 3, 4, 4, generator=g), size=(size, size),
                                                 mode="bilinear", align_corners=False)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    noisy = prototypes[labels] + 0.4 * (torch.rand(len(labels), 3, size, size, generator=g) - 0.5)
    return (noisy.clamp(0, 1) * 255).to(torch.uint8), labels


def gaussian_classes(num_classes=6, dim=8, per_class=30, separation=3.0, seed=0):
    """Well-separated Gaussian classes: unit noise around means with spread ``separation``."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_classes, dim)) * separation
    labels = np.repeat(np.arange(num_classes), per_class)
    return means[labels] + rng.normal(size=(len(labels), dim)), labels


def test_toy_training_is_deterministic_and_shaped():
    images, labels = pattern_images()
    labels = labels * 10 + 5  # arbitrary ids: 5, 15, 25, 35
    threads_before = torch.get_num_threads()
    kwargs = dict(embedding_dim=3, steps=15, batch_size=16, image_size=16)
    first = G.train_toy_embedding(images, labels, "sphereface", seed=3, margin=4, **kwargs)
    second = G.train_toy_embedding(images.numpy(), labels.numpy(), "sphereface", seed=3, margin=4, **kwargs)
    other_seed = G.train_toy_embedding(images, labels, "sphereface", seed=4, margin=4, **kwargs)
    assert torch.get_num_threads() == threads_before
    assert first.features.shape == (40, 3) and first.features.dtype == np.float32
    assert first.class_weights.shape == (4, 3)
    np.testing.assert_array_equal(first.classes, [5, 15, 25, 35])
    np.testing.assert_array_equal(first.labels, labels.numpy())
    assert set(np.unique(first.predictions)) <= {5, 15, 25, 35}
    assert first.losses.shape == (15,) and np.all(np.isfinite(first.losses))
    for field in ("features", "class_weights", "losses", "predictions"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert not np.array_equal(first.features, other_seed.features)


def test_images_are_resized_and_vectors_use_the_mlp():
    images, labels = pattern_images(size=24)
    result = G.train_toy_embedding(images, labels, "softmax", embedding_dim=2, steps=3, image_size=16)
    assert result.features.shape == (40, 2)
    vectors, vector_labels = gaussian_classes(num_classes=3, per_class=5)
    result = G.train_toy_embedding(vectors, vector_labels, "cosface", embedding_dim=2, steps=3, scale=10.0)
    assert result.features.shape == (15, 2)
    assert isinstance(G.toy_network((8,), 2)[0], torch.nn.Linear)


def test_holdout_split_is_stratified_seeded_and_never_trained_on():
    labels = np.repeat([0, 1, 2], [10, 4, 7])
    mask = G.holdout_split(labels, 0.3, seed=0)
    np.testing.assert_array_equal(mask, G.holdout_split(labels, 0.3, seed=0))
    held = np.bincount(labels[~mask], minlength=3)
    np.testing.assert_array_equal(held, [3, 1, 2])  # round(0.3 * n_c), at least 1, never a whole class
    assert not np.array_equal(mask, G.holdout_split(labels, 0.3, seed=1))
    vectors, vector_labels = gaussian_classes(num_classes=3, per_class=10)
    result = G.train_toy_embedding(vectors, vector_labels, "softmax", steps=5, holdout_fraction=0.2)
    assert (~result.is_train).sum() == 6
    assert np.isfinite(result.afs(split="heldout")) and 0 <= result.accuracy("heldout") <= 1
    table = G.summarize_toy_embeddings({"softmax": result})
    assert {"afs_train", "afs_heldout", "accuracy_heldout"} <= set(table.columns)


def test_toy_training_rejects_bad_input():
    images, labels = pattern_images()
    with pytest.raises(ValueError, match="channels-first"):
        G.train_toy_embedding(images.permute(0, 2, 3, 1), labels, "softmax", steps=1)
    with pytest.raises(DataError, match="shape"):
        G.train_toy_embedding(images, labels[:-1], "softmax", steps=1)
    with pytest.raises(DataError, match="at least 2 classes"):
        G.train_toy_embedding(images, torch.zeros(40, dtype=torch.long), "softmax", steps=1)
    with pytest.raises(DataError, match="integer"):
        G.train_toy_embedding(images, labels.float(), "softmax", steps=1)
    with pytest.raises(ValueError, match="unknown head"):
        G.train_toy_embedding(images, labels, "nohead", steps=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_softmax_margin_makes_classes_more_compact_than_softmax(seed):
    """Paper, Fig. 5 / Table: larger m -> lower Angular Fisher score. On well-separated classes with a
    2-D embedding, m = 4 beats softmax on each seed (ratios 0.23-0.71 over seeds 0-9 when written)."""
    x, y = gaussian_classes(seed=seed)
    kwargs = dict(embedding_dim=2, steps=200, seed=seed)
    softmax = G.train_toy_embedding(x, y, "softmax", **kwargs)
    sphereface = G.train_toy_embedding(x, y, "sphereface", margin=4, **kwargs)
    assert sphereface.accuracy() == 1.0
    assert sphereface.afs() < 0.8 * softmax.afs()


def test_figures_draw_every_setting():
    vectors, labels = gaussian_classes(num_classes=3, per_class=8)
    flat = G.train_toy_embedding(vectors, labels, "softmax", embedding_dim=2, steps=3)
    fig = G.plot_features_2d({"a": flat, "b": (flat.features, flat.labels)})
    assert len(fig.axes) == 4
    round_ = G.train_toy_embedding(vectors, labels, "sphereface", embedding_dim=3, steps=3, margin=2)
    fig3 = G.plot_features_3d({"m=2": round_})
    assert len(fig3.axes) == 1
    with pytest.raises(ValueError, match="3-D features"):
        G.plot_features_3d({"flat": flat})
    fig_bounds = G.plot_margin_bounds(G.binary_margin_bound(60), G.multiclass_margin_bound(range(3, 6)),
                                      margins=np.linspace(1.5, 6, 10))
    assert len(fig_bounds.axes) == 2
    ax = G.plot_decision_regions([0.0, 2.0], margins=(1, 4))
    assert len(ax.lines) == 4  # 2 classes x 2 margins
    plt.close("all")
