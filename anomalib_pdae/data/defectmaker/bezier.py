"""Closed, smooth Bezier outlines drawn through random points and filled as binary masks."""

from __future__ import annotations

import cv2
import numpy as np

# Control points live in a 100×100 box; the outline is then stretched to the requested box.
_POINT_BOX = 100
# Degenerate point sets (all on one row or column) are redrawn at most this many times.
_MAX_REDRAWS = 20


def closed_bezier_curve(
    points: np.ndarray, k: float, samples_per_segment: int = 10, straight: np.ndarray | None = None
) -> np.ndarray:
    """Points on a closed piecewise-cubic Bezier curve passing through every vertex of ``points``.

    At each vertex the two tangent handles lie on a line parallel to the segment that joins the
    midpoints of the adjacent edges, split in proportion to the edge lengths; ``k`` pulls the
    handles towards the vertex (``k = 1`` gives the polygon itself, small ``k`` a rounder curve).
    A segment flagged in ``straight`` keeps only its starting vertex, so the outline runs along
    the straight chord to the next vertex (REB's code does this to each segment with p = 0.5).

    Args:
        points: ``(n, 2)`` vertices ``(x, y)`` in drawing order, ``n >= 3``.
        k: handle tightness in ``[0, 1]``.
        samples_per_segment: curve samples between consecutive vertices.
        straight: ``(n,)`` booleans, segment ``i`` (vertex ``i`` to ``i + 1``) drawn as a chord.

    Returns:
        ``(m, 2)`` float array of ``(x, y)`` samples, ``m = n * samples_per_segment`` when no
        segment is straight.
    """
    p = np.asarray(points, dtype=np.float64)
    previous, following = np.roll(p, 1, axis=0), np.roll(p, -1, axis=0)
    mid_in, mid_out = (previous + p) / 2, (p + following) / 2
    len_in = np.linalg.norm(p - previous, axis=1)
    len_out = np.linalg.norm(following - p, axis=1)
    ratio = np.divide(len_in, len_in + len_out, out=np.full_like(len_in, 0.5), where=len_in + len_out > 0)
    split = mid_in + (mid_out - mid_in) * ratio[:, None]
    handle_in = p + (1 - k) * (mid_in - split)
    handle_out = p + (1 - k) * (mid_out - split)

    t = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[None, :, None]
    start, c1, c2, end = (
        p[:, None],
        handle_out[:, None],
        np.roll(handle_in, -1, axis=0)[:, None],
        following[:, None],
    )
    curve = (1 - t) ** 3 * start + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * end
    if straight is None:
        return curve.reshape(-1, 2)
    keep = np.ones(curve.shape[:2], dtype=bool)
    keep[np.asarray(straight, dtype=bool), 1:] = False
    return curve[keep]


def random_bezier_points(rng: np.random.Generator, num_points: int) -> np.ndarray:
    """``num_points`` random integer points in a 100×100 box, sorted by angle around their centroid."""
    for _ in range(_MAX_REDRAWS):
        points = rng.integers(0, _POINT_BOX, size=(num_points, 2)).astype(np.float64)
        if np.ptp(points[:, 0]) > 0 and np.ptp(points[:, 1]) > 0:
            break
    else:  # pragma: no cover - probability ~ (1/100)^(n-1) per draw
        points = np.array([[0, 0], [_POINT_BOX - 1, 0], [_POINT_BOX - 1, _POINT_BOX - 1]], dtype=np.float64)
    centre = points.mean(axis=0)
    angle = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    return points[np.argsort(angle, kind="stable")]


def bezier_mask(
    height: int,
    width: int,
    rng: np.random.Generator,
    num_points: tuple[int, ...] = (5, 6),
    tightness: tuple[float, ...] = (0.2, 0.3, 0.4),
    samples_per_segment: int = 10,
    straight_prob: float = 0.5,
) -> np.ndarray:
    """A filled random closed Bezier shape stretched to span a ``height × width`` box.

    Args:
        height: box height in pixels.
        width: box width in pixels.
        rng: source of randomness.
        num_points: choices for the number of control points.
        tightness: choices for the handle tightness ``k`` of :func:`closed_bezier_curve`.
        samples_per_segment: curve samples between consecutive control points.
        straight_prob: probability that a segment is a straight chord (REB's code: 0.5).

    Returns:
        Boolean mask ``(height, width)``; the shape touches all four sides of the box.

    Example:
        >>> mask = bezier_mask(40, 60, np.random.default_rng(0))
        >>> mask.shape, bool(mask[:, 0].any() and mask[:, -1].any())
        ((40, 60), True)
    """
    n = int(rng.choice(num_points))
    k = float(rng.choice(tightness))
    points = random_bezier_points(rng, n)
    curve = closed_bezier_curve(points, k, samples_per_segment, straight=rng.random(n) < straight_prob)
    low, span = curve.min(axis=0), np.ptp(curve, axis=0)
    scale = np.array([width - 1, height - 1], dtype=np.float64)
    pixels = np.rint((curve - low) / np.maximum(span, 1e-9) * scale).astype(np.int32)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [pixels.reshape(-1, 1, 2)], 1)
    return mask.astype(bool)
