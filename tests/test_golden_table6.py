"""REB Table 6 scorers against the numbers REB's own code produces (tests/golden/reb_table6.json)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden_features import clustered_bank_and_queries, load_golden

from anomalib_pdae.models.ldknn import scorers

GOLDEN = load_golden("reb_table6.json")


@pytest.mark.parametrize("scorer", ["knn", "kth_nn", "lof_reb", "ldof_reb"])
def test_table6_scorer_reproduces_the_authors_code(scorer: str) -> None:
    spec = GOLDEN["input"]
    bank, queries = clustered_bank_and_queries(
        spec["seed"], spec["clusters"], spec["bank"], spec["queries"], spec["dim"]
    )
    bank, queries = torch.from_numpy(bank), torch.from_numpy(queries)
    k = GOLDEN["k"]
    statistics = scorers.fit_statistics(scorer, bank, bank, k, "squared", progress=False)
    ours = scorers.score(scorer, queries, bank, statistics, k=k, distance="squared")
    np.testing.assert_allclose(ours.numpy(), GOLDEN["scores"][scorer], rtol=1e-4)


@pytest.mark.parametrize(("textbook", "reb"), [("lof", "lof_reb"), ("ldof", "ldof_reb")])
def test_textbook_forms_stay_distinct_options(textbook: str, reb: str) -> None:
    spec = GOLDEN["input"]
    bank, queries = map(torch.from_numpy, clustered_bank_and_queries(spec["seed"], 8, 200, 16, 32))
    scores = {
        name: scorers.score(
            name, queries, bank, scorers.fit_statistics(name, bank, bank, 5, progress=False), k=5
        )
        for name in (textbook, reb)
    }
    assert not torch.allclose(scores[textbook], scores[reb], rtol=1e-2)
