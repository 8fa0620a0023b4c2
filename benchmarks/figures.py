"""REB Fig. 4 (image AUROC vs test images per second) and Fig. 5 (image AUROC vs K) from a CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot(table: str, results: pd.DataFrame, path: Path, title_note: str = "") -> Path:
    """Draw ``fig4`` or ``fig5`` from a results frame to a PNG at ``path``."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    # Mean over the categories run, per dataset, backbone, method, parameter and metric.
    frame = results.assign(parameter=results["parameter"].astype(float))
    means = frame.groupby(["dataset", "backbone", "method", "parameter", "metric"], as_index=False)[
        "value"
    ].mean()
    datasets = list(dict.fromkeys(means["dataset"]))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets, strict=True):
        subset = means[means["dataset"] == dataset]
        for (backbone, method), group in subset.groupby(["backbone", "method"]):
            wide = group.pivot(index="parameter", columns="metric", values="value").sort_index()
            label = f"{method} ({backbone})"
            if table == "fig4":
                axis.plot(wide["images_per_second"], wide["image_auroc"], marker="o", label=label)
                for ratio, row in wide.iterrows():
                    axis.annotate(
                        f"{100 * ratio:g}%",
                        (row["images_per_second"], row["image_auroc"]),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=8,
                    )
                axis.set_xlabel("test images per second (data loading included)")
            else:
                axis.plot(wide.index, wide["image_auroc"], marker="o", label=label)
                axis.set_xlabel("K")
        axis.set_ylabel("image AUROC (%), mean over categories run")
        axis.set_title(f"{dataset}{title_note}")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
