"""CPU costs behind the README's wall-time estimates for the full table runs.

Measures, on this machine's CPU, (1) the forward time per image of each paper backbone at its
input size (random weights: the time does not depend on them) and (2) faiss's exact k-NN
throughput, which LDKNN's local densities use (on the CPU even when the model is on a GPU).
Prints a markdown table; the README turns these into estimates.

    python benchmarks/cpu_costs.py [--threads 2] [--batch 4]
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
import torch

from anomalib_pdae.models.components.backbone import Backbone

BACKBONES = (
    # (timm name, layers, input size): REB/PatchCore CNNs at 256, PDAE's pair at 384.
    ("resnet18", ["layer2", "layer3"], 256),
    ("wide_resnet50_2", ["layer2", "layer3"], 256),
    ("wide_resnet101_2", ["layer2", "layer3"], 256),
    ("densenet201", ["features.denseblock1", "features.denseblock2"], 384),
    ("cait_xxs24_384", ["blocks.15"], 384),
)


def forward_seconds(name: str, layers: list[str], size: int, batch: int, repeats: int = 2) -> float:
    """Best-of-``repeats`` seconds per image of one forward pass (no gradients)."""
    model = Backbone(name, layers, pre_trained=False)
    images = torch.rand(batch, 3, size, size)
    best = float("inf")
    with torch.no_grad():
        model(images)
        for _ in range(repeats):
            started = time.perf_counter()
            model(images)
            best = min(best, time.perf_counter() - started)
    return best / batch


def knn_flops_per_second(queries: int = 4096, bank: int = 65536, dim: int = 512, k: int = 10) -> float:
    """Multiply-adds per second of faiss.knn (exact, squared L2) counted as queries·bank·dim."""
    generator = np.random.default_rng(0)
    x = generator.standard_normal((queries, dim), dtype=np.float32)
    y = generator.standard_normal((bank, dim), dtype=np.float32)
    faiss.knn(x[:256], y, k)
    started = time.perf_counter()
    faiss.knn(x, y, k)
    return queries * bank * dim / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"| backbone | input | CPU s/image ({args.threads} threads) |")
    print("|---|---|---|")
    for name, layers, size in BACKBONES:
        seconds = forward_seconds(name, layers, size, args.batch)
        print(f"| {name} | {size} | {seconds:.3f} |", flush=True)
    print(f"\nfaiss.knn: {knn_flops_per_second() / 1e9:.1f} G multiply-adds/s")


if __name__ == "__main__":
    main()
