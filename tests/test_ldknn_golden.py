"""LDKNN's scores and maps against numbers recorded from the authors' code (``tests/golden``).

``reb_ldknn_map.json``: REB's ``NNHead`` (nn_type ldknn: local density with self exclusion, the
subtract form, the block-max image score) and its ``RescaleSegmentor``; ``patchcore_reference_map.json``:
patchcore-inspection's 1-NN scorer, max image score and ``RescaleSegmentor``. Each file names the
repository, commit, functions and how they were run. Inputs are regenerated from the recorded
recipe (seeded dyadic features, so float32 distances are exact and ties are absent). The ratio
form ``d / ld^gamma`` exists only in the paper's text, not in the REB code, so it has no golden;
``test_ldknn_scorers.py`` checks it against its formula.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings
from anomalib_pdae.models.ldknn.scorers import fit_statistics

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def inputs(recorded: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full bank ``(N, D)``, memory rows (every 4th) and queries ``(B, D, H, W)`` from the recipe."""
    rng = np.random.default_rng(recorded["seed"])

    def dyadic(shape):
        return np.clip(np.round(rng.normal(size=shape) * 64) / 64, -4, 4).astype(np.float32)

    full = dyadic(recorded["full_bank_shape"])
    queries = dyadic(recorded["queries_shape"])
    assert full.astype(np.float64).sum() == recorded["checksums"]["full_bank_sum"]
    assert queries.astype(np.float64).sum() == recorded["checksums"]["queries_sum"]
    full = torch.from_numpy(full)
    return full, full[0::4].contiguous(), torch.from_numpy(queries).permute(0, 3, 1, 2).contiguous()


def fitted(recorded: dict, **settings) -> tuple[LdknnModel, torch.Tensor]:
    """An LdknnModel whose bank is the recorded memory (densities with the recorded K), and the queries."""
    full, memory, queries = inputs(recorded)
    settings = {"backbone": "resnet18", "k": recorded["k"]} | settings
    model = LdknnModel(LdknnSettings(**settings), pre_trained=False).eval()
    model.memory_bank = memory
    model.local_density = fit_statistics("ldknn", memory, full, recorded["k"], progress=False)[
        "local_density"
    ]
    return model, queries


@pytest.fixture(scope="module")
def reb() -> dict:
    return golden("reb_ldknn_map.json")


@pytest.fixture(scope="module")
def patchcore() -> dict:
    return golden("patchcore_reference_map.json")


def close(got: torch.Tensor, expected: list, scale: float = 1.0) -> None:
    # float32 sums over D=16 dims of values up to ~4: a few 1e-6 of the score range
    np.testing.assert_allclose(got.detach().double().numpy(), np.asarray(expected), rtol=0, atol=2e-5 * scale)


def test_local_density_excludes_the_point_itself_like_reb(reb):
    full, memory, _ = inputs(reb["inputs"])
    assert reb["source"]["self_distances_exactly_zero"] == len(memory)  # REB then drops itself
    density = fit_statistics("ldknn", memory, full, reb["inputs"]["k"], progress=False)["local_density"]
    close(density, np.mean(reb["local_density_neighbour_distances"], axis=1))


def outputs(model: LdknnModel, queries: torch.Tensor, image_size: list[int]) -> tuple[torch.Tensor, ...]:
    """Patch scores for the image, image scores and maps, as ``forward`` computes them from embeddings."""
    image_patches, map_patches = model.patch_scores(queries)
    scored = model.image_outputs(image_patches, map_patches, image_size)
    return image_patches, map_patches, scored.pred_score, scored.anomaly_map


def test_patch_and_block_max_image_scores_match_reb(reb):
    model, queries = fitted(reb["inputs"])
    image_patches, map_patches, image_scores, _ = outputs(model, queries, reb["inputs"]["image_size"])
    close(image_patches[:, 0], reb["patch_scores"])
    assert torch.equal(image_patches, map_patches)  # REB maps the corrected score
    close(image_scores, reb["image_scores"])


def test_anomaly_map_matches_reb_rescale_segmentor(reb):
    model, queries = fitted(reb["inputs"])
    maps = outputs(model, queries, reb["inputs"]["image_size"])[3]
    scale = float(np.abs(reb["anomaly_maps"]).max())
    close(maps[:, 0], reb["anomaly_maps"], scale)


def test_knn_scores_and_map_match_patchcore_reference(patchcore):
    model, queries = fitted(patchcore["inputs"], scorer="knn", k=1, image_score="max")
    image_patches, _, image_scores, maps = outputs(model, queries, patchcore["inputs"]["image_size"])
    close(image_patches[:, 0], patchcore["patch_scores"])
    close(image_scores, patchcore["image_scores"])
    close(maps[:, 0], patchcore["anomaly_maps"], float(np.abs(patchcore["anomaly_maps"]).max()))


def test_distance_map_option_is_patchcore_map_with_reb_image_score(reb, patchcore):
    """``map_score="distance"``: the image score keeps LDKNN's correction, the map is PatchCore's."""
    model, queries = fitted(reb["inputs"], map_score="distance")
    _, _, image_scores, maps = outputs(model, queries, patchcore["inputs"]["image_size"])
    close(image_scores, reb["image_scores"])
    close(maps[:, 0], patchcore["anomaly_maps"], float(np.abs(patchcore["anomaly_maps"]).max()))
    assert not np.allclose(patchcore["anomaly_maps"], reb["anomaly_maps"])  # the two maps differ
