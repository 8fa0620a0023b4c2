"""Two more exportable candidate schemes for LDKNN's search, against the exact search.

Both keep the re-rank of ``search="approximate"`` (exact distances to a few candidate rows,
``components/search.py:reranked``) and change only where the candidates come from. Both have
static shapes (matmul, top-k, gather, pooling), so they would export like the PCA candidates:

- **centre lists**: ``centres`` greedy k-center rows of the bank (``greedy_coreset``), each
  with a fixed list of its ``list_length`` nearest bank rows; a query re-ranks the lists of its
  ``probes`` nearest centres. An inverted file whose cells all have one size.
- **spatial parents**: the patch queries of an image, average-pooled ``pool`` × ``pool``; the
  ``candidates`` nearest bank rows of every parent (exact search) are the candidates of the
  patches under it, and with ``window`` 3 of the patches under its eight neighbours too.

Centre lists are measured as ``approximate_search.py`` measures its grid: recall of the exact
1-NN and search speed-up on the same seeded sample of training patches, searched 1 024 at a time
(one image's patches). Spatial parents need whole images, so they are measured on the test
split: recall on the patches of its first images, image / pixel AUROC and the scoring time of
the model (median at batch 1), reported to show the scheme's effect and used to choose nothing.

Usage: ``python benchmarks/candidate_schemes.py [--backbone mobilenetv2_100]``; writes
``benchmarks/results/candidate_schemes.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
from torch import nn
from torch.nn.functional import avg_pool2d, pad, unfold

from anomalib_pdae.models.components.coreset import greedy_coreset
from anomalib_pdae.models.components.search import nearest_neighbours, reranked
from benchmarks import approximate_search
from benchmarks.markdown import pipe_table
from benchmarks.metrics import auroc
from benchmarks.settings import SHARED
from benchmarks.timing import timed

RESULTS = Path(__file__).resolve().parent / "results" / "candidate_schemes"
# (centres, list_length, probes): 2·16 to 8·64 candidates per query.
CENTRE_LISTS = [(c, length, probes) for c in (512, 2048) for length in (16, 64) for probes in (2, 8)]
# (pool, candidates, window)
SPATIAL_PARENTS = [(2, 8, 1), (2, 16, 1), (2, 8, 3), (4, 16, 3)]
QUERY_CHUNK = 1024
RECALL_IMAGES = 32


class CentreListSearch(nn.Module):
    """Candidates from fixed lists of the bank rows nearest to a few centres; ``search(queries, bank, k)``.

    Example:
        >>> bank = torch.randn(200, 8)
        >>> search = CentreListSearch(centres=4, list_length=200, probes=1)
        >>> search.fit(bank)
        >>> bool((search(bank[:5], bank)[1][:, 0] == torch.arange(5)).all())
        True
    """

    def __init__(self, centres: int, list_length: int, probes: int) -> None:
        super().__init__()
        self.centre_count, self.list_length, self.probes = centres, list_length, probes

    def fit(self, bank: torch.Tensor) -> None:
        """Choose the centres and each centre's list of nearest bank rows."""
        picks = torch.from_numpy(greedy_coreset(bank, self.centre_count / len(bank), progress=False))
        self.centres = bank[picks].contiguous()
        self.lists = nearest_neighbours(self.centres, bank, k=self.list_length)[1]

    def forward(
        self, queries: torch.Tensor, bank: torch.Tensor, k: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances and indices ``(N, k)`` of the nearest rows among the probed lists."""
        _, probed = nearest_neighbours(queries, self.centres, k=self.probes)
        return reranked(queries, bank, self.lists[probed].reshape(len(queries), -1), k)


class SpatialParentSearch(nn.Module):
    """Candidates of a patch: the nearest bank rows of its pooled parent (and the parent's neighbours).

    The queries are the rows of whole ``grid``-sized patch maps, image by image, row-major (as
    :class:`LdknnModel` searches them).

    Example:
        >>> bank = torch.randn(50, 8)
        >>> queries = torch.randn(2 * 4 * 4, 8)
        >>> search = SpatialParentSearch(pool=1, candidates=50, window=1, grid=(4, 4))
        >>> bool((search(queries, bank)[1] == nearest_neighbours(queries, bank)[1]).all())
        True
    """

    def __init__(self, pool: int, candidates: int, window: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.pool, self.candidates, self.window, self.grid = pool, candidates, window, grid

    def forward(
        self, queries: torch.Tensor, bank: torch.Tensor, k: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances and indices ``(N, k)`` of the nearest rows among the parents' candidates."""
        height, width = self.grid
        maps = queries.reshape(-1, height, width, queries.shape[1]).permute(0, 3, 1, 2)
        parents = avg_pool2d(maps, self.pool)
        images, _, rows, columns = parents.shape
        parent_rows = parents.permute(0, 2, 3, 1).reshape(-1, queries.shape[1])
        _, found = nearest_neighbours(parent_rows, bank, self.candidates)
        # unfold works on floats: bank indices below 2**24 are exact in float32
        found = found.reshape(images, rows, columns, -1).permute(0, 3, 1, 2).float()
        if self.window > 1:
            side = self.window // 2
            found = pad(found, (side, side, side, side), mode="replicate")
            found = unfold(found, self.window).reshape(images, -1, rows, columns)
        found = found.repeat_interleave(self.pool, dim=2).repeat_interleave(self.pool, dim=3)
        candidates = found.long().permute(0, 2, 3, 1).reshape(len(queries), -1)
        return reranked(queries, bank, candidates, k)


def chunked(
    search: nn.Module, queries: torch.Tensor, bank: torch.Tensor, size: int = QUERY_CHUNK
) -> torch.Tensor:
    """Nearest bank row of every query, searched ``size`` queries at a time."""
    return torch.cat([search(part, bank, k=1)[1][:, 0] for part in queries.split(size)])


def measure_centre_lists(bank: torch.Tensor, patches: torch.Tensor) -> list[dict]:
    """Recall of the exact 1-NN and search speed-up over the exact search, per setting."""
    exact_index, exact_seconds = timed(chunked, nearest_neighbours, patches, bank)
    rows = []
    for centres, list_length, probes in CENTRE_LISTS:
        search = CentreListSearch(centres, list_length, probes)
        search.fit(bank)
        chunked(search, patches[:QUERY_CHUNK], bank)  # warm-up
        index, seconds = timed(chunked, search, patches, bank)
        rows.append(
            {
                "centres": centres,
                "list_length": list_length,
                "probes": probes,
                "recall": (index == exact_index).float().mean().item(),
                "speed_up": exact_seconds / seconds,
            }
        )
    return rows


def measure_spatial_parents(model: nn.Module, test: tuple, embeddings: torch.Tensor) -> dict[str, dict]:
    """Exact search and each spatial-parent setting on the test split: recall, AUROC, scoring time."""
    _, labels, masks = test
    grid = tuple(embeddings.shape[-2:])
    image_patches = grid[0] * grid[1]  # spatial parents search whole images
    queries = embeddings[:RECALL_IMAGES].permute(0, 2, 3, 1).reshape(-1, embeddings.shape[1])
    exact_index = chunked(nearest_neighbours, queries, model.memory_bank, image_patches)
    searches = {"exact": model.search}
    for pool, candidates, window in SPATIAL_PARENTS:
        name = f"pool {pool}, {candidates} candidates, window {window}"
        searches[name] = SpatialParentSearch(pool, candidates, window, grid)
    timed_embeddings = embeddings[: approximate_search.TIMED_IMAGES]
    rows = {}
    for name, search in searches.items():
        model.search = search
        scores, maps = approximate_search.score(model, embeddings)
        found = chunked(search, queries, model.memory_bank, image_patches)
        rows[name] = {
            "recall": (found == exact_index).float().mean().item(),
            "image_auroc": auroc(scores, labels),
            "pixel_auroc": auroc(maps, masks > 0.5),
            "scoring_ms": approximate_search.median_ms(
                lambda e: approximate_search.score(model, e), timed_embeddings
            ),
        }
        print(name, rows[name], flush=True)
    model.search = searches["exact"]
    return rows


def write(result: dict, backbone: str) -> None:
    """``candidate_schemes.md`` and ``.json`` from one run's measurements."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".json").write_text(json.dumps(result, indent=2))
    exact_ms = result["spatial_parents"]["exact"]["scoring_ms"]
    lines = [
        "# Two more candidate schemes against exact neighbour search (LDKNN, KolektorSDD)",
        "",
        f"Command: `python benchmarks/candidate_schemes.py --backbone {backbone}`. Machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Load average after the run: {result['load']:.2f}.",
        "",
        f"Bank: {backbone}, layers blocks.2 + blocks.4, 256×256, 10% coreset ({result['bank'][0]} × "
        f"{result['bank'][1]}), K = 5, gamma = 1; both schemes re-rank their candidates by exact "
        'distance, as `search="approximate"` does (see the module docstring).',
        "",
        f"## Centre lists, on {approximate_search.SAMPLE_PATCHES} training patches",
        "",
        f"Recall of the exact 1-NN; search speed-up over the exact search, both {QUERY_CHUNK} "
        "queries at a time.",
        "",
    ]
    cells = [
        [
            r["centres"],
            r["list_length"],
            r["probes"],
            r["probes"] * r["list_length"],
            f"{r['recall']:.4f}",
            f"{r['speed_up']:.2f}×",
        ]
        for r in result["centre_lists"]
    ]
    lines += pipe_table(
        ["centres", "list length", "probes", "candidates", "recall", "search speed-up"], cells
    )
    lines += [
        "",
        "## Spatial parents, on the test split",
        "",
        f"Recall of the exact 1-NN on the patches of the first {RECALL_IMAGES} test images; AUROC on all "
        f"149; scoring = patch scores + image score + anomaly map from given embeddings, median of "
        f"{approximate_search.TIMED_IMAGES} images at batch 1 after a warm-up.",
        "",
    ]
    cells = [
        [
            name,
            f"{r['recall']:.4f}",
            f"{r['image_auroc']:.2f}",
            f"{r['pixel_auroc']:.2f}",
            f"{r['scoring_ms']:.1f}",
            f"{exact_ms / r['scoring_ms']:.2f}×",
        ]
        for name, r in result["spatial_parents"].items()
    ]
    lines += pipe_table(["search", "recall", "image AUROC", "pixel AUROC", "scoring ms", "speed-up"], cells)
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(SHARED / "data"))
    parser.add_argument("--weights-dir", default=str(SHARED / "weights"))
    parser.add_argument("--backbone", default="mobilenetv2_100")
    args = parser.parse_args()
    model, sample, _ = approximate_search.fitted(args.backbone, args.data_root, args.weights_dir)
    with torch.no_grad():
        centre_lists = measure_centre_lists(model.memory_bank, sample)
        test = approximate_search.images(args.data_root, "test")
        embeddings = torch.cat([model.embed(part) for part in test[0].split(approximate_search.BATCH)])
        spatial_parents = measure_spatial_parents(model, test, embeddings)
    result = {
        "bank": list(model.memory_bank.shape),
        "centre_lists": centre_lists,
        "spatial_parents": spatial_parents,
        "load": os.getloadavg()[0],
    }
    write(result, args.backbone)


if __name__ == "__main__":
    main()
