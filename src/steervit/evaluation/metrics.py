"""Metrics for the benchmark suite (reference §5), written in numpy so that no scikit-learn is needed at runtime.

Conventions shared by every function here:
- Results are fractions in [0, 1], never percent (multiply by 100 to compare with the paper's tables).
- Inputs may be numpy arrays, torch tensors (any device, any float dtype) or nested lists.
- A score at or above a threshold counts as predicted positive; samples with equal scores always fall on
  the same side of every threshold, so ties are never broken by input order.
- Rankings with ties are scored by their expected value over a uniformly random order of the tied items
  (the rule scikit-learn's `ndcg_score` uses), so a model that outputs constant features scores chance,
  not a lucky or unlucky order.
- A value that is undefined for the given labels (no positive, no negative, nothing relevant) is NaN, not
  0; batched versions return per-item arrays so callers can `np.nanmean` and report how many were NaN.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "auroc",
    "average_precision",
    "batched_average_precision",
    "core_precision_at_k",
    "f1_max",
    "mean_iou",
    "ndcg",
    "ndcg_from_similarity",
    "patch_grid_mask",
    "per_class_iou",
    "precision_at_k",
    "pro_score",
    "recall_at_k",
]


# --------------------------------------------------------------------------------------------- helpers
def _numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """Any array-like (torch tensors included) as a numpy array; bool conversion means "non-zero"."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        x = x.numpy()
    x = np.asarray(x)
    if dtype is bool and x.dtype != bool:
        return x != 0
    return x if dtype is None else x.astype(dtype, copy=False)


def _scores_and_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flattened float64 scores and boolean labels of the same size."""
    s = _numpy(scores, np.float64).ravel()
    y = _numpy(labels, bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.size} vs {y.size}")
    if s.size == 0:
        raise ValueError("empty input")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return s, y


def _threshold_curve(scores: np.ndarray, weights_pos: np.ndarray, weights_neg: np.ndarray):
    """Cumulative positive and negative weight at or above each distinct score, highest score first.

    With unit weights these are the true- and false-positive counts of sklearn's `_binary_clf_curve`;
    PRO uses per-pixel weights instead. Returns (pos, neg, thresholds).
    """
    order = np.argsort(scores, kind="stable")[::-1]
    s = scores[order]
    last_of_tie = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    pos = np.cumsum(weights_pos[order])[last_of_tie]
    neg = np.cumsum(weights_neg[order])[last_of_tie]
    return pos, neg, s[last_of_tie]


def _counts(scores: Any, labels: Any):
    """(true positives, false positives, #positives, #negatives) at each distinct threshold."""
    s, y = _scores_and_labels(scores, labels)
    tps, fps, _ = _threshold_curve(s, y.astype(np.float64), (~y).astype(np.float64))
    return tps, fps, int(y.sum()), int((~y).sum())


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid rule (np.trapz was renamed in numpy 2; this works on both)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


# ------------------------------------------------------------------------------ binary score metrics
def average_precision(scores: Any, labels: Any) -> float:
    """Area under the precision-recall curve, step-wise: AP = sum_n (R_n - R_{n-1}) * P_n.

    Same definition as sklearn's `average_precision_score` (no interpolation). The sum runs over the
    distinct score thresholds, highest first; tied scores enter as one step. Inputs of any shape are
    flattened; labels are binary (non-zero = positive). No positive label: NaN. All positive: 1.0.
    """
    tps, fps, n_pos, _ = _counts(scores, labels)
    if n_pos == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def batched_average_precision(scores: Any, labels: Any) -> np.ndarray:
    """`average_precision` of each map in a batch: (M, ...) scores and labels -> (M,) array.

    Lists of differently sized maps are accepted. Maps without a positive give NaN (use np.nanmean).
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} score maps but {len(labels)} label maps")
    return np.array([average_precision(s, y) for s, y in zip(scores, labels)], dtype=np.float64)


def auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve, as sklearn's `roc_auc_score` for binary labels.

    One ROC point per distinct threshold (tied scores move TPR and FPR together, i.e. a diagonal step),
    starting at (0, 0), integrated with the trapezoid rule. Equal to P(score_pos > score_neg) + 0.5 *
    P(score_pos == score_neg). Inputs are flattened. Only one class present: NaN.
    """
    tps, fps, n_pos, n_neg = _counts(scores, labels)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    return _trapezoid(fpr, tpr)


def f1_max(scores: Any, labels: Any) -> float:
    """Best F1 = 2PR / (P + R) over all thresholds "score >= t" (pixel-level F1-max of WinCLIP).

    Thresholds are the distinct scores, so ties are never split. Inputs are flattened. No positive label:
    NaN (F1 is undefined). All positive: 1.0.
    """
    tps, fps, n_pos, _ = _counts(scores, labels)
    if n_pos == 0:
        return float("nan")
    # 2PR / (P + R) simplifies to 2 TP / (TP + FP + #positives).
    return float(np.max(2.0 * tps / (tps + fps + n_pos)))


# ------------------------------------------------------------------------------------ PRO (MVTec AD)
def _label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a 2-D boolean mask: (labels with 0 = background, count)."""
    try:
        from scipy import ndimage
    except ImportError:
        return _label_components_fallback(mask)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    return labels, int(count)


def _label_components_fallback(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Flood-fill labelling used when scipy is missing; slow in Python but GT masks are sparse."""
    mask = np.asarray(mask, dtype=bool)
    labels = np.zeros(mask.shape, dtype=np.int32)
    h, w = mask.shape
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        stack = [start]
        while stack:
            i, j = stack.pop()
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if 0 <= a < h and 0 <= b < w and mask[a, b] and not labels[a, b]:
                        labels[a, b] = count
                        stack.append((a, b))
    return labels, count


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under a piecewise-linear curve (x non-decreasing) from x[0] to x_max.

    y at x_max is interpolated linearly between the last point at or before x_max and the next one.
    """
    inside = x <= x_max
    xs, ys = x[inside], y[inside]
    if xs[-1] < x_max:
        j = int(np.argmax(~inside))  # first point beyond x_max
        y_at = ys[-1] + (y[j] - ys[-1]) * (x_max - xs[-1]) / (x[j] - xs[-1])
        xs, ys = np.r_[xs, x_max], np.r_[ys, y_at]
    return _trapezoid(xs, ys)


def pro_score(
    anomaly_maps: Any, gt_masks: Any, max_fpr: float = 0.3, num_thresholds: int | None = None
) -> float:
    """Normalised area under the per-region-overlap curve up to `max_fpr` (MVTec AD "AU-PRO").

    Procedure (as the official MVTec AD evaluation code):
    1. Regions are the 8-connected components of each image's ground-truth mask (never across images).
    2. For a threshold t, pixels with score >= t are predicted anomalous. PRO(t) = mean over all regions
       of the dataset of |predicted ∩ region| / |region| (every region counts equally, whatever its size);
       FPR(t) = |predicted ∩ normal| / |normal|, over all normal pixels of all images.
    3. Thresholds: `num_thresholds=None` uses every distinct score (exact curve); an integer uses that
       many thresholds evenly spaced from the highest to the lowest score (the common 200-step
       approximation). The curve starts at (0, 0) (threshold above every score) and ends at (1, 1).
    4. The area under PRO over FPR in [0, max_fpr] by the trapezoid rule, PRO interpolated linearly at
       max_fpr, divided by max_fpr so that a perfect map scores 1.

    anomaly_maps and gt_masks: (N, H, W) or one (H, W) map. NaN if there is no anomalous or no normal pixel.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    maps = _numpy(anomaly_maps, np.float64)
    gts = _numpy(gt_masks, bool)
    if maps.ndim == 2:
        maps, gts = maps[None], gts[None]
    if maps.ndim != 3 or maps.shape != gts.shape:
        raise ValueError(f"need matching (N, H, W) maps and masks, got {maps.shape} and {gts.shape}")
    if np.isnan(maps).any():
        raise ValueError("anomaly maps contain NaN")

    # Each anomalous pixel adds 1 / |its region| to its region's overlap; each normal pixel 1 / #normal to FPR.
    region_weight = np.zeros(maps.shape, dtype=np.float64)
    n_regions = 0
    for i, gt in enumerate(gts):
        labels, count = _label_components(gt)
        if count:
            inv_size = 1.0 / np.maximum(np.bincount(labels.ravel()), 1)
            inv_size[0] = 0.0
            region_weight[i] = inv_size[labels]
            n_regions += count
    n_normal = int((~gts).sum())
    if n_regions == 0 or n_normal == 0:
        return float("nan")
    pro_w = region_weight.ravel() / n_regions
    fpr_w = (~gts).ravel() / n_normal
    scores = maps.ravel()

    if num_thresholds is None:
        pro, fpr, _ = _threshold_curve(scores, pro_w, fpr_w)
    else:
        if num_thresholds < 2:
            raise ValueError("num_thresholds must be at least 2")
        order = np.argsort(scores, kind="stable")
        ascending = scores[order]
        cum_pro = np.r_[0.0, np.cumsum(pro_w[order])]
        cum_fpr = np.r_[0.0, np.cumsum(fpr_w[order])]
        thresholds = np.linspace(ascending[-1], ascending[0], num_thresholds)
        below = np.searchsorted(ascending, thresholds, side="left")  # pixels with score < t
        pro = cum_pro[-1] - cum_pro[below]
        fpr = cum_fpr[-1] - cum_fpr[below]
    # At the lowest threshold every pixel is predicted anomalous: exactly (1, 1), free of rounding.
    fpr = np.r_[0.0, np.clip(fpr[:-1], 0.0, 1.0), 1.0]
    pro = np.r_[0.0, np.clip(pro[:-1], 0.0, 1.0), 1.0]
    return _area_up_to(fpr, pro, max_fpr) / max_fpr


# ------------------------------------------------------------------------------------------ retrieval
def _similarity_matrix(similarity: Any) -> np.ndarray:
    sim = _numpy(similarity, np.float64)
    if sim.ndim == 1:
        sim = sim[None]
    if sim.ndim != 2:
        raise ValueError(f"similarity must be (queries, gallery), got shape {sim.shape}")
    return sim


def _valid_mask(exclude: Any, shape: tuple[int, int]) -> np.ndarray:
    if exclude is None:
        return np.ones(shape, dtype=bool)
    return ~_numpy(exclude, bool).reshape(shape)


def precision_at_k(
    similarity: Any, query_labels: Any, gallery_labels: Any, k: int, exclude: Any = None
) -> float:
    """Mean over queries of the share of the k most similar gallery items that carry the query's label.

    similarity: (Q, G), higher = more similar. exclude: optional (Q, G) boolean mask of pairs removed from
    the gallery before ranking (the query itself, images of the same base image). The result is divided
    by k; a query with fewer than k remaining gallery items raises ValueError. Ties at the k-th place are
    scored by expectation: if m gallery items share the k-th similarity and s of the k slots fall among
    them, they contribute s / m of their label matches.
    """
    sim = _similarity_matrix(similarity)
    q_labels = _numpy(query_labels).ravel()
    g_labels = _numpy(gallery_labels).ravel()
    if sim.shape != (q_labels.size, g_labels.size):
        raise ValueError(f"similarity {sim.shape} vs {q_labels.size} query and {g_labels.size} gallery labels")
    valid = _valid_mask(exclude, sim.shape)
    if not np.isfinite(sim[valid]).all():
        raise ValueError("similarity must be finite on the gallery items that are not excluded")
    if k < 1 or (valid.sum(1) < k).any():
        raise ValueError(f"k={k} needs at least k gallery items per query after exclusion")

    relevant = (q_labels[:, None] == g_labels[None, :]) & valid
    ranked = np.where(valid, sim, -np.inf)
    kth = -np.partition(-ranked, k - 1, axis=1)[:, k - 1:k]  # k-th largest similarity per query
    above = ranked > kth  # excluded items are -inf and never count
    tied = ranked == kth
    slots = k - above.sum(1)
    hits = (relevant & above).sum(1) + slots * (relevant & tied).sum(1) / tied.sum(1)
    return float(np.mean(hits / k))


def core_precision_at_k(
    features: Any,
    object_labels: Any,
    image_ids: Any,
    ks: Sequence[int] = (1, 5, 10),
    query_mask: Any = None,
) -> dict[int, float]:
    """CORE protocol (reference §5): P@k with every image a query against all the other images.

    features: (N, D) global features, L2-normalised here (so cosine similarity; already normalised inputs
    are unaffected). For each query the gallery is every image except the query and all images with the
    same `image_id` (the other inpainted variants of its base image). query_mask: optional (N,) booleans
    choosing which images act as queries - the paper encodes a scene with one object's prompt and only
    that object's images are queries; the gallery is always all N images. Returns {k: P@k}.
    """
    f = _numpy(features, np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got {f.shape}")
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    labels = _numpy(object_labels).ravel()
    ids = _numpy(image_ids).ravel()
    if not labels.size == ids.size == f.shape[0]:
        raise ValueError("features, object_labels and image_ids must have the same length")
    exclude = ids[:, None] == ids[None, :]
    np.fill_diagonal(exclude, True)
    queries = np.ones(f.shape[0], dtype=bool) if query_mask is None else _numpy(query_mask, bool).ravel()
    sim = f[queries] @ f.T
    return {int(k): precision_at_k(sim, labels[queries], labels, int(k), exclude[queries]) for k in ks}


def recall_at_k(similarity: Any, positive_index: Any, ks: Sequence[int] = (1, 2, 3)) -> dict[int, float]:
    """GeneCIS R@k: share of queries whose single positive is among the k most similar gallery items.

    similarity: (Q, G), each row one query's own gallery; positive_index: (Q,) column of the positive.
    Galleries of different sizes can be padded with -inf. Ties with the positive are scored by
    expectation: with a items above it and m items (itself included) at its similarity, the chance it
    lands in the top k is clip((k - a) / m, 0, 1). Returns {k: R@k}.
    """
    sim = _similarity_matrix(similarity)
    pos = _numpy(positive_index).astype(np.int64).ravel()
    if pos.size != sim.shape[0]:
        raise ValueError(f"{sim.shape[0]} queries but {pos.size} positive indices")
    if np.isnan(sim).any():
        raise ValueError("similarity contains NaN")
    pos_sim = sim[np.arange(sim.shape[0]), pos][:, None]
    above = (sim > pos_sim).sum(1)
    tied = (sim == pos_sim).sum(1)
    return {int(k): float(np.mean(np.clip((k - above) / tied, 0.0, 1.0))) for k in ks}


def _discounts(n: int, k: int | None) -> np.ndarray:
    """1 / log2(rank + 1) for ranks 1..n, zero beyond rank k."""
    disc = 1.0 / np.log2(np.arange(2, n + 2))
    if k is not None:
        disc[k:] = 0.0
    return disc


def ndcg(relevance_in_ranked_order: Any, k: int | None = None) -> float:
    """NDCG@k of one ranking: DCG = sum_i rel_i / log2(i + 1) over ranks i = 1..k, divided by the DCG of
    the same relevances sorted best-first. Linear gains (rel, not 2^rel - 1), as sklearn's `ndcg_score`.

    relevance_in_ranked_order: 1-D non-negative relevances (binary or graded), best-ranked first.
    k=None uses the whole list. Nothing relevant: NaN.
    """
    rel = _numpy(relevance_in_ranked_order, np.float64)
    if rel.ndim != 1 or rel.size == 0:
        raise ValueError(f"need a non-empty 1-D relevance list, got shape {rel.shape}")
    if (rel < 0).any():
        raise ValueError("relevance must be non-negative")
    disc = _discounts(rel.size, k)
    ideal = float(np.sort(rel)[::-1] @ disc)
    return float(rel @ disc) / ideal if ideal > 0 else float("nan")


def ndcg_from_similarity(
    similarity: Any, relevance: Any, k: int | None = None, exclude: Any = None
) -> float:
    """Mean NDCG@k over queries, ranking each query's gallery by similarity (descending).

    similarity, relevance: (Q, G) or (G,); exclude: optional (Q, G) mask of pairs dropped before ranking.
    Ties in similarity get the average gain of their group at every position the group occupies
    (sklearn's `ndcg_score` with ignore_ties=False). Queries with nothing relevant are undefined and
    skipped (unlike sklearn, which counts them as 0); NaN if every query is skipped.
    """
    sim = _similarity_matrix(similarity)
    rel = _numpy(relevance, np.float64).reshape(sim.shape)
    valid = _valid_mask(exclude, sim.shape)
    if (rel < 0).any():
        raise ValueError("relevance must be non-negative")
    scores = []
    for s, r, v in zip(sim, rel, valid):
        s, r = s[v], r[v]
        if s.size == 0 or r.max() <= 0:
            continue
        order = np.argsort(-s, kind="stable")
        s, r = s[order], r[order]
        starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
        group_size = np.diff(np.r_[starts, s.size])
        disc = _discounts(s.size, k)
        dcg = np.sum(np.add.reduceat(r, starts) / group_size * np.add.reduceat(disc, starts))
        scores.append(dcg / (np.sort(r)[::-1] @ disc))
    return float(np.mean(scores)) if scores else float("nan")


# --------------------------------------------------------------------------------------- segmentation
def _mask_list(masks: Any) -> list:
    if isinstance(masks, (np.ndarray, torch.Tensor)) and masks.ndim == 2:
        return [masks]
    return list(masks)


def per_class_iou(pred_masks: Any, gt_masks: Any, class_ids: Any = None) -> dict:
    """Dataset-level IoU per class: sum of intersections / sum of unions over all masks of that class.

    pred_masks, gt_masks: sequences (or (N, H, W) arrays) of binary masks, pair i of class class_ids[i]
    (None: a single class 0). Masks of one pair must match in shape; different pairs may differ.
    Classes whose union is empty over the whole dataset (never predicted, never present) are left out.
    """
    preds, gts = _mask_list(pred_masks), _mask_list(gt_masks)
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted masks but {len(gts)} ground-truth masks")
    classes = [0] * len(preds) if class_ids is None else _numpy(class_ids).ravel().tolist()
    if len(classes) != len(preds):
        raise ValueError(f"{len(preds)} masks but {len(classes)} class ids")
    inter: dict = {}
    union: dict = {}
    for p, g, c in zip(preds, gts, classes):
        p, g = _numpy(p, bool), _numpy(g, bool)
        if p.shape != g.shape:
            raise ValueError(f"mask shapes differ: {p.shape} vs {g.shape}")
        inter[c] = inter.get(c, 0) + int((p & g).sum())
        union[c] = union.get(c, 0) + int((p | g).sum())
    return {c: inter[c] / union[c] for c in union if union[c] > 0}


def mean_iou(pred_masks: Any, gt_masks: Any, class_ids: Any = None) -> float:
    """mIoU for binary class-vs-rest segmentation: the foreground IoU of each class accumulated over the
    dataset (`per_class_iou`, not a per-image mean), then the unweighted mean over classes.

    Accumulating first keeps images where the class is tiny from dominating. NaN if no class is scored.
    """
    ious = per_class_iou(pred_masks, gt_masks, class_ids)
    return float(np.mean(list(ious.values()))) if ious else float("nan")


def patch_grid_mask(
    mask: Any,
    patch_size: int | tuple[int, int] | None = None,
    grid: int | tuple[int, int] | None = None,
    min_coverage: float = 0.5,
):
    """Pixel mask (H, W) or (N, H, W) -> patch-level boolean ground truth (gh, gw) or (N, gh, gw).

    A patch is positive when at least `min_coverage` of its pixels are in the mask (and at least one is:
    `min_coverage=0` means "any pixel"). So that a small object still has a ground truth - otherwise
    AP is undefined for it - a mask with any positive pixel but no patch reaching `min_coverage` marks the
    patch(es) with the largest coverage instead. Give `patch_size` (H and W must be multiples of it) or
    `grid`; for a grid that does not divide the mask, cells are torch's adaptive-pooling bins. Returns the
    input's type (torch tensor or numpy array).
    """
    if (patch_size is None) == (grid is None):
        raise ValueError("give exactly one of patch_size and grid")
    as_torch = isinstance(mask, torch.Tensor)
    m = torch.from_numpy(_numpy(mask, bool).astype(np.float64))
    single = m.ndim == 2
    if single:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"mask must be (H, W) or (N, H, W), got {tuple(m.shape)}")
    h, w = m.shape[-2:]
    if patch_size is not None:
        ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
        if h % ph or w % pw:
            raise ValueError(f"mask size {(h, w)} is not a multiple of patch size {(ph, pw)}")
        grid = (h // ph, w // pw)
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    coverage = F.adaptive_avg_pool2d(m[:, None], (gh, gw))[:, 0]
    positive = (coverage >= min_coverage) & (coverage > 0)
    best = coverage.flatten(1).amax(1)
    fallback = ~positive.flatten(1).any(1) & (best > 0)
    positive[fallback] = coverage[fallback] == best[fallback][:, None, None]
    if single:
        positive = positive[0]
    return positive.to(mask.device) if as_torch else positive.numpy()
