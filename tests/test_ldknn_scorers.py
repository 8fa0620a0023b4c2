"""LDKNN and the KNN variants against slow, obviously-correct references on small point sets."""

import faiss
import numpy as np
import pytest
import torch

from anomalib_pdae.models.components import faiss_knn, nearest_neighbours
from anomalib_pdae.models.ldknn import scorers

# A 2-D bank: a tight cluster near the origin and a sparse one far away.
BANK = torch.tensor(
    [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [0.1, 0.1], [5.0, 5.0], [6.0, 5.0], [5.0, 6.0], [6.0, 6.0]]
)
QUERIES = torch.tensor([[0.05, 0.05], [5.5, 5.5], [2.0, 2.0], [0.0, 0.0]])


def sq(a, b):
    return float(((a - b) ** 2).sum())


def neighbours(point, bank, k, skip=None):
    """Sorted (squared distance, index) of the k nearest bank rows, optionally skipping one row."""
    pairs = sorted((sq(point, row), i) for i, row in enumerate(bank) if i != skip)
    return pairs[:k]


def local_density(bank, k):
    return [np.mean([d for d, _ in neighbours(bank[i], bank, k, skip=i)]) for i in range(len(bank))]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_local_density_is_mean_squared_distance_to_k_neighbours(k):
    tables = scorers.fit_statistics("ldknn", BANK, BANK, k, progress=False)
    np.testing.assert_allclose(tables["local_density"].numpy(), local_density(BANK, k), rtol=1e-5, atol=1e-7)


def test_local_density_of_the_two_clusters_is_known():
    # K = 2: in the tight square every point's two nearest are 0.1 away (0.01 squared);
    # in the sparse square 1.0 away (1.0 squared).
    ld = scorers.fit_statistics("ldknn", BANK, BANK, 2, progress=False)["local_density"]
    np.testing.assert_allclose(ld.numpy(), [0.01] * 4 + [1.0] * 4, rtol=1e-5)


@pytest.mark.parametrize(
    ("mode", "gamma"), [("subtract", 1.0), ("subtract", 0.5), ("ratio", 1.0), ("ratio", 0.5)]
)
def test_ldknn_score_both_density_modes(mode, gamma):
    k = 2
    ld = local_density(BANK, k)
    expected = []
    for q in QUERIES:
        d, j = neighbours(q, BANK, 1)[0]
        expected.append(d - gamma * ld[j] if mode == "subtract" else d / ld[j] ** gamma)
    tables = scorers.fit_statistics("ldknn", BANK, BANK, k, progress=False)
    got = scorers.score("ldknn", QUERIES, BANK, tables, k, ld_coefficient=gamma, density_mode=mode)
    # float32 |q|² + |b|² − 2q·b: with |q|² ≈ 60 a distance is good to about 1e-5 absolute
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_ldknn_favours_sparse_regions():
    """A query equally far from both clusters scores lower next to the sparse one (REB's point)."""
    tables = scorers.fit_statistics("ldknn", BANK, BANK, 2, progress=False)
    near_tight, near_sparse = torch.tensor([[0.05, -0.5]]), torch.tensor([[5.5, 4.45]])
    s = scorers.score("ldknn", torch.cat([near_tight, near_sparse]), BANK, tables, 2)
    d = scorers.score("knn", torch.cat([near_tight, near_sparse]), BANK, {}, 1)
    assert d[0] < d[1] + 0.5  # similar plain distances
    assert s[1] < s[0]


def test_local_density_against_full_bank_with_a_subset_memory():
    memory = BANK[[0, 4]]
    ld = scorers.fit_statistics("ldknn", memory, BANK, 2, progress=False)["local_density"]
    np.testing.assert_allclose(ld.numpy(), [local_density(BANK, 2)[0], local_density(BANK, 2)[4]], rtol=1e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_knn_and_kth_nn(k):
    knn = scorers.score("knn", QUERIES, BANK, {}, k)
    kth = scorers.score("kth_nn", QUERIES, BANK, {}, k)
    for i, q in enumerate(QUERIES):
        pairs = neighbours(q, BANK, k)
        assert knn[i].item() == pytest.approx(np.mean([d for d, _ in pairs]), rel=1e-4, abs=1e-6)
        assert kth[i].item() == pytest.approx(pairs[-1][0], rel=1e-4, abs=1e-6)


def test_lof_matches_breunig_definition():
    k = 2

    def k_distance(i):
        return neighbours(BANK[i], BANK, k, skip=i)[-1][0]

    def lrd_of_bank(i):
        return 1 / np.mean([max(k_distance(j), d) for d, j in neighbours(BANK[i], BANK, k, skip=i)])

    expected = []
    for q in QUERIES:
        pairs = neighbours(q, BANK, k)
        lrd_q = 1 / np.mean([max(k_distance(j), d) for d, j in pairs])
        expected.append(np.mean([lrd_of_bank(j) for _, j in pairs]) / lrd_q)
    tables = scorers.fit_statistics("lof", BANK, BANK, k, progress=False)
    got = scorers.score("lof", QUERIES, BANK, tables, k)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_ldof_matches_zhang_definition():
    k = 3
    expected = []
    for q in QUERIES:
        pairs = neighbours(q, BANK, k)
        outer = np.mean([d for d, _ in pairs])
        idx = [j for _, j in pairs]
        inner = np.mean([sq(BANK[a], BANK[b]) for a in idx for b in idx if a != b])
        expected.append(outer / inner)
    got = scorers.score("ldof", QUERIES, BANK, {}, k)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_euclidean_distance_is_the_square_root():
    tables = scorers.fit_statistics("ldknn", BANK, BANK, 2, distance="euclidean", progress=False)
    ld = [np.mean([np.sqrt(d) for d, _ in neighbours(BANK[i], BANK, 2, skip=i)]) for i in range(len(BANK))]
    np.testing.assert_allclose(tables["local_density"].numpy(), ld, rtol=1e-5)
    knn = scorers.score("knn", QUERIES, BANK, {}, 1, distance="euclidean")
    np.testing.assert_allclose(
        knn.numpy(), [np.sqrt(neighbours(q, BANK, 1)[0][0]) for q in QUERIES], rtol=1e-4
    )


def test_torch_search_matches_faiss():
    generator = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(50, 16, generator=generator), torch.randn(300, 16, generator=generator)
    torch_d, torch_i = nearest_neighbours(queries, bank, k=4)
    faiss_d, faiss_i = faiss_knn(queries, bank, k=4)
    np.testing.assert_allclose(torch_d.numpy(), faiss_d, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(torch_i.numpy(), faiss_i)


def test_torch_search_walks_the_bank_in_chunks(monkeypatch):
    from anomalib_pdae.models.components import search

    generator = torch.Generator().manual_seed(1)
    queries, bank = torch.randn(20, 8, generator=generator), torch.randn(100, 8, generator=generator)
    expected = torch.cdist(queries, bank).pow(2).topk(5, largest=False)
    monkeypatch.setattr(search, "BANK_CHUNK", 7)
    distances, indices = nearest_neighbours(queries, bank, k=5)
    torch.testing.assert_close(distances, expected.values, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(indices, expected.indices)


def test_faiss_exclude_self_drops_the_point_itself():
    distances, indices = faiss_knn(BANK, BANK, 1, exclude_self=True)
    assert (indices[:, 0] != np.arange(len(BANK))).all()
    np.testing.assert_allclose(distances[:, 0], [0.01] * 4 + [1.0] * 4, rtol=1e-5)


def test_faiss_exclude_self_drops_the_point_even_when_rounding_moves_it_off_zero():
    generator = np.random.default_rng(0)
    bank = np.abs(generator.normal(size=(300, 512))).astype(np.float32)  # like ReLU features
    raw_distances, raw_indices = faiss.knn(bank, bank, 1)
    assert (raw_indices[:, 0] == np.arange(len(bank))).all()
    assert (raw_distances[:, 0] > 0).any(), "precondition: rounding gives some self-distance > 0"
    distances, indices = faiss_knn(bank, bank, 3, exclude_self=True)
    exact = ((bank[:, None].astype(np.float64) - bank[None]) ** 2).sum(-1)
    np.fill_diagonal(exact, np.inf)
    assert (indices != np.arange(len(bank))[:, None]).all()
    np.testing.assert_allclose(distances, np.sort(exact, axis=1)[:, :3], rtol=1e-3)
