"""Benchmark metrics: hand-computed cases, edge cases, and cross-checks against scikit-learn / torchmetrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from steervit.evaluation import metrics as M
from steervit.evaluation.metrics import (
    auroc,
    average_precision,
    batched_average_precision,
    core_precision_at_k,
    f1_max,
    mean_iou,
    ndcg,
    ndcg_from_similarity,
    patch_grid_mask,
    per_class_iou,
    precision_at_k,
    pro_score,
    recall_at_k,
)

LOG2_3 = math.log2(3)  # discount of rank 2 is 1 / log2(3) = 0.6309297535714575

# Shared toy: ranked 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.6 (neg).
SCORES = [0.9, 0.8, 0.7, 0.6]
LABELS = [1, 0, 1, 0]
# With ties: 0.9 (neg), {0.5 pos, 0.5 neg}, 0.1 (pos).
TIE_SCORES = [0.9, 0.5, 0.5, 0.1]
TIE_LABELS = [0, 1, 0, 1]


def _random_binary(rng, n, p=0.3, ties=False):
    scores = rng.random(n)
    if ties:
        scores = np.round(scores, 1)  # only 11 distinct values: many ties
    labels = rng.random(n) < p
    labels[0], labels[1] = True, False  # both classes present
    return scores, labels


# --------------------------------------------------------------------------------- average precision
def test_average_precision_hand():
    # t=0.9: TP1 FP0 -> P=1, R=1/2;  t=0.7: TP2 FP1 -> P=2/3, R=1.  AP = 1/2*1 + 1/2*2/3 = 5/6.
    assert average_precision(SCORES, LABELS) == pytest.approx(5 / 6)
    # t=0.9: TP0 FP1 R=0;  t=0.5 (tie, one step): TP1 FP2 P=1/3 R=1/2;  t=0.1: TP2 FP2 P=1/2 R=1.
    # AP = 1/2*1/3 + 1/2*1/2 = 5/12 = 0.41666...
    assert average_precision(TIE_SCORES, TIE_LABELS) == pytest.approx(5 / 12)


def test_average_precision_edges():
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))  # no positive: undefined
    assert average_precision([0.3, 0.2, 0.2], [1, 1, 1]) == 1.0  # all positive
    assert average_precision([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0]) == pytest.approx(0.25)  # all tied = prevalence
    # 2-D maps are flattened; torch input works.
    as_maps = torch.tensor([[0.9, 0.8], [0.7, 0.6]]), torch.tensor([[1, 0], [1, 0]])
    assert average_precision(*as_maps) == pytest.approx(5 / 6)
    with pytest.raises(ValueError):
        average_precision([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueError):
        average_precision([0.1, 0.2], [1, 0, 1])


def test_batched_average_precision():
    out = batched_average_precision([SCORES, TIE_SCORES, [0.1, 0.2]], [LABELS, TIE_LABELS, [0, 0]])
    assert out.shape == (3,)
    np.testing.assert_allclose(out[:2], [5 / 6, 5 / 12])
    assert math.isnan(out[2])
    rng = np.random.default_rng(0)
    maps, masks = rng.random((5, 8, 8)), rng.random((5, 8, 8)) < 0.2
    expected = [average_precision(a, b) for a, b in zip(maps, masks)]
    np.testing.assert_allclose(batched_average_precision(maps, masks), expected)


@pytest.mark.parametrize("ties", [False, True])
def test_average_precision_matches_sklearn(ties):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(20):
        s, y = _random_binary(rng, 200, ties=ties)
        assert average_precision(s, y) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_batched_average_precision_matches_torchmetrics():
    tmf = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(2)
    maps, masks = rng.random((4, 16, 16)), rng.random((4, 16, 16)) < 0.25
    ours = batched_average_precision(torch.from_numpy(maps), torch.from_numpy(masks))
    theirs = [tmf.binary_average_precision(torch.from_numpy(a).flatten(), torch.from_numpy(b).flatten().long()).item()
              for a, b in zip(maps, masks)]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


# ------------------------------------------------------------------------------------------- AUROC
def test_auroc_hand():
    # Pairs (pos, neg): 0.9 beats both negatives, 0.7 beats 0.6 only -> 3 of 4 pairs.
    assert auroc(SCORES, LABELS) == pytest.approx(0.75)
    # Pairs: (0.5 vs 0.9) 0, (0.5 vs 0.5) tie = 1/2, (0.1 vs 0.9) 0, (0.1 vs 0.5) 0 -> 0.5 / 4 = 0.125.
    # Trapezoids over (0,0), (1/2,0), (1,1/2), (1,1): the tie is one diagonal step of area 1/2*1/4.
    assert auroc(TIE_SCORES, TIE_LABELS) == pytest.approx(0.125)


def test_auroc_edges():
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
    assert math.isnan(auroc([0.1, 0.2], [0, 0]))
    assert auroc([0.5, 0.5, 0.5], [1, 0, 0]) == pytest.approx(0.5)  # constant scores: chance
    assert auroc([0.2, 0.1], [1, 0]) == 1.0
    assert auroc([0.1, 0.2], [1, 0]) == 0.0


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_matches_sklearn(ties):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(20):
        s, y = _random_binary(rng, 300, ties=ties)
        assert auroc(s, y) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


# ------------------------------------------------------------------------------------------ F1-max
def test_f1_max_hand():
    # F1 = 2TP / (TP + FP + #pos), #pos = 2:
    # t=0.9: 2/3;  t=0.8: 2/4;  t=0.7: 4/5 = 0.8;  t=0.6: 4/6.  Max 0.8.
    assert f1_max(SCORES, LABELS) == pytest.approx(0.8)
    # t=0.9: 0;  t=0.5: 2/(3+2) = 0.4;  t=0.1: 4/(4+2) = 2/3.  Max 2/3 (ties are not split).
    assert f1_max(TIE_SCORES, TIE_LABELS) == pytest.approx(2 / 3)


def test_f1_max_edges():
    assert math.isnan(f1_max([0.1, 0.2], [0, 0]))
    assert f1_max([0.1, 0.2], [1, 1]) == 1.0
    assert f1_max([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0]) == pytest.approx(2 / 5)  # only "all positive": 2*1/(4+1)


@pytest.mark.parametrize("ties", [False, True])
def test_f1_max_matches_sklearn(ties):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    for _ in range(20):
        s, y = _random_binary(rng, 300, ties=ties)
        precision, recall, _ = skm.precision_recall_curve(y, s)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        assert f1_max(s, y) == pytest.approx(f1.max(), abs=1e-12)


# --------------------------------------------------------------------------------------------- PRO
# 2x4 toy. GT regions (8-connectivity): R1 = {(0,0), (0,1)} (size 2), R2 = {(1,3)} (size 1); 5 normal pixels.
PRO_GT = np.array([[1, 1, 0, 0],
                   [0, 0, 0, 1]])
PRO_MAP = np.array([[0.9, 0.5, 0.6, 0.1],
                    [0.2, 0.3, 0.5, 0.8]])
# Thresholds high to low (score >= t is anomalous), PRO = mean(overlap R1, overlap R2), FPR = normal hits / 5:
#   start (0, 0); t=.9: R1 1/2 -> (0, .25); t=.8: R2 1 -> (0, .75); t=.6: (.2, .75);
#   t=.5 (a normal pixel and R1's second pixel tie): (.4, 1); t=.3: (.6, 1); t=.2: (.8, 1); t=.1: (1, 1).


def test_pro_hand_exact():
    # [0, .2] at .75: .15.  [.2, .3]: PRO interpolated at .3 on (.2,.75)-(.4,1) = .875 -> .1 * (.75+.875)/2 = .08125.
    # (.15 + .08125) / .3 = .23125 / .3 = 37/48 = 0.7708333...
    assert pro_score(PRO_MAP, PRO_GT) == pytest.approx(37 / 48)
    # To FPR 1: .15 + .2*(.75+1)/2 + .6*1 = .15 + .175 + .6 = .925.
    assert pro_score(PRO_MAP, PRO_GT, max_fpr=1.0) == pytest.approx(0.925)
    # To FPR .2 exactly on a curve point: .15 / .2 = .75.
    assert pro_score(PRO_MAP, PRO_GT, max_fpr=0.2) == pytest.approx(0.75)


def test_pro_hand_threshold_grid():
    # 3 thresholds evenly from .9 down to .1: .9, .5, .1 -> curve (0,0), (0,.25), (.4,1), (1,1).
    # PRO at .3 on (0,.25)-(.4,1) = .25 + .75*.75 = .8125; area .3*(.25+.8125)/2 = .159375; / .3 = .53125.
    assert pro_score(PRO_MAP, PRO_GT, num_thresholds=3) == pytest.approx(0.53125)
    # Many thresholds converge on the exact curve.
    rng = np.random.default_rng(5)
    maps, gts = rng.random((3, 16, 16)), rng.random((3, 16, 16)) < 0.1
    exact = pro_score(maps, gts)
    assert pro_score(maps, gts, num_thresholds=20000) == pytest.approx(exact, abs=2e-3)


def test_pro_regions_are_8_connected_and_weighted_equally():
    # Diagonal pixels form ONE region under 8-connectivity: detecting one pixel gives overlap 1/2.
    gt = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    amap = np.array([[0.9, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.0]])
    # Curve: (0,0), t=.9: (0, .5), t=.1: (0, 1), t=0: (1, 1) -> area to .3 = .3 -> 1.0 (no false positives needed).
    assert pro_score(amap, gt) == pytest.approx(1.0)
    labels, count = M._label_components(gt.astype(bool))
    assert count == 1
    # A big region and a small one count equally: catching only the small one gives PRO 1/2 at FPR 0.
    gt2 = np.zeros((6, 6), int)
    gt2[0:3, 0:3] = 1  # 9 pixels
    gt2[5, 5] = 1  # 1 pixel
    amap2 = np.zeros((6, 6))
    amap2[5, 5] = 1.0
    # Curve: (0,0), t=1: (0, .5), t=0: (1, 1).  PRO(.3) = .5 + .5*.3 = .65; area .3*(.5+.65)/2; / .3 = .575.
    assert pro_score(amap2, gt2) == pytest.approx(0.575)


def test_pro_edges():
    assert math.isnan(pro_score(np.random.rand(2, 4, 4), np.zeros((2, 4, 4))))  # no anomaly
    assert math.isnan(pro_score(np.random.rand(4, 4), np.ones((4, 4))))  # no normal pixel
    # Perfect separation scores 1; constant maps give the diagonal PRO = FPR -> area .3^2/2 / .3 = .15.
    gt = np.zeros((2, 5, 5))
    gt[0, 1:3, 1:3] = 1
    gt[1, 4, 4] = 1
    assert pro_score(gt * 0.7 + 0.1, gt) == pytest.approx(1.0)
    assert pro_score(np.zeros((2, 5, 5)), gt) == pytest.approx(0.15)
    with pytest.raises(ValueError):
        pro_score(np.zeros((2, 5, 5)), gt, max_fpr=0.0)
    with pytest.raises(ValueError):
        pro_score(np.zeros((2, 5, 4)), gt)


def _naive_pro(maps, gts, max_fpr):
    """Independent reference: loop over thresholds, per-region overlaps with scipy labelling."""
    from scipy import ndimage

    regions = []
    for i, g in enumerate(gts):
        lab, n = ndimage.label(g, structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    normal = ~gts
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        pros.append(np.mean([pred[i][r].mean() for i, r in regions]))
        fprs.append((pred & normal).sum() / normal.sum())
    fprs, pros = np.array(fprs), np.array(pros)
    grid = np.linspace(0, max_fpr, 20001)
    # PRO as a function of FPR, taking the upper value on vertical jumps (np.interp uses the last point).
    y = np.interp(grid, fprs, pros)
    return np.sum(np.diff(grid) * (y[1:] + y[:-1]) / 2) / max_fpr


def test_pro_matches_naive_reference():
    pytest.importorskip("scipy")
    rng = np.random.default_rng(6)
    maps = np.round(rng.random((3, 12, 12)), 2)  # with ties
    gts = np.zeros((3, 12, 12), bool)
    gts[0, 2:5, 2:6] = True
    gts[0, 8, 8:11] = True
    gts[1, 6:12, 0:3] = True
    gts[1, 0, 11] = True
    gts[2] = rng.random((12, 12)) < 0.05
    maps[gts] += 0.3  # anomalies score higher on average
    for max_fpr in (0.05, 0.3, 1.0):
        assert pro_score(maps, gts, max_fpr=max_fpr) == pytest.approx(_naive_pro(maps, gts, max_fpr), abs=1e-4)


def test_label_fallback_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(7)
    for _ in range(10):
        mask = rng.random((20, 17)) < 0.35
        ours, n_ours = M._label_components_fallback(mask)
        ref, n_ref = ndimage.label(mask, structure=np.ones((3, 3)))
        assert n_ours == n_ref
        # Same partition up to the numbering: the label pairs map one-to-one.
        pairs = set(zip(ours[mask].tolist(), ref[mask].tolist()))
        assert len(pairs) == n_ref
        assert (ours[~mask] == 0).all()


# ------------------------------------------------------------------------------------ precision@k
def test_precision_at_k_hand():
    sim = [[0.9, 0.8, 0.7, 0.6, 0.5]]
    gallery = ["a", "b", "a", "a", "b"]
    # Ranked labels a, b, a, a, b -> P@1 = 1, P@2 = 1/2, P@3 = 2/3.
    assert precision_at_k(sim, ["a"], gallery, 1) == 1.0
    assert precision_at_k(sim, ["a"], gallery, 2) == pytest.approx(0.5)
    assert precision_at_k(sim, ["a"], gallery, 3) == pytest.approx(2 / 3)
    # Excluding the first item: ranked b, a, a, b -> P@1 = 0, P@3 = 2/3.
    exclude = [[True, False, False, False, False]]
    assert precision_at_k(sim, ["a"], gallery, 1, exclude) == 0.0
    assert precision_at_k(sim, ["a"], gallery, 3, exclude) == pytest.approx(2 / 3)
    # Two queries averaged: query "b" has P@1 = 0 -> mean (1 + 0) / 2.
    assert precision_at_k([sim[0], sim[0]], ["a", "b"], gallery, 1) == pytest.approx(0.5)


def test_precision_at_k_ties_by_expectation():
    sim = [[0.5, 0.5, 0.5, 0.1]]
    gallery = [0, 1, 1, 0]
    # Three items tie for the top, one of them relevant (label 0).
    # P@1: 1 slot among 3 tied -> 1/3 expected hits -> 1/3.  P@2: 2 slots -> 2/3 hits / 2 = 1/3.
    # P@4: everything -> 2/4.
    assert precision_at_k(sim, [0], gallery, 1) == pytest.approx(1 / 3)
    assert precision_at_k(sim, [0], gallery, 2) == pytest.approx(1 / 3)
    assert precision_at_k(sim, [0], gallery, 4) == pytest.approx(0.5)
    # Constant similarity = chance (share of relevant items), whatever the gallery order.
    assert precision_at_k(np.zeros((1, 10)), [1], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0], 1) == pytest.approx(0.2)


def test_precision_at_k_errors():
    with pytest.raises(ValueError):  # fewer than k left after exclusion
        precision_at_k([[0.1, 0.2]], [0], [0, 1], 2, [[True, False]])
    with pytest.raises(ValueError):
        precision_at_k([[0.1, float("nan")]], [0], [0, 1], 1)
    # NaN on an excluded pair is fine.
    assert precision_at_k([[0.1, float("nan")]], [0], [0, 1], 1, [[False, True]]) == 1.0


def test_precision_at_k_matches_torchmetrics():
    tm_retrieval = pytest.importorskip("torchmetrics.functional.retrieval")
    rng = np.random.default_rng(8)
    q, g, k = 30, 40, 5
    sim = rng.standard_normal((q, g))
    q_lab, g_lab = rng.integers(0, 4, q), rng.integers(0, 4, g)
    exclude = rng.random((q, g)) < 0.2
    expected = []
    for i in range(q):
        keep = ~exclude[i]
        preds = torch.from_numpy(sim[i][keep])
        target = torch.from_numpy(g_lab[keep] == q_lab[i])
        expected.append(tm_retrieval.retrieval_precision(preds, target, top_k=k).item())
    assert precision_at_k(sim, q_lab, g_lab, k, exclude) == pytest.approx(np.mean(expected), abs=1e-6)


def test_core_precision_at_k_hand():
    # Images 0,1 share base image 0; images 2,3 share base image 1. Labels x, y, x, y.
    # Features are scaled by 3 to check the normalisation inside.
    feats = 3 * np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [1.0, 0.2]])
    labels = ["x", "y", "x", "y"]
    ids = [0, 0, 1, 1]
    # Galleries (other base image only): q0 {2, 3}: cos .995 vs .981 -> 2 (x) right.
    # q1 {2, 3}: cos .0995 vs .196 -> 3 (y) right.  q2 {0, 1}: 0 (x) right.  q3 {0, 1}: cos .981 vs .196 -> 0 (x) wrong.
    out = core_precision_at_k(feats, labels, ids, ks=(1, 2))
    assert out[1] == pytest.approx(3 / 4)
    assert out[2] == pytest.approx(1 / 2)  # each gallery holds one x and one y
    # Only the "y" images as queries (the paper's per-object protocol): q1 right, q3 wrong.
    out_y = core_precision_at_k(torch.from_numpy(feats), labels, ids, ks=(1,), query_mask=[False, True, False, True])
    assert out_y == {1: pytest.approx(0.5)}


def test_core_precision_at_k_matches_loop():
    rng = np.random.default_rng(9)
    n = 60
    feats = rng.standard_normal((n, 8))
    labels = rng.integers(0, 5, n)
    ids = np.repeat(np.arange(n // 5), 5)
    feats_n = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    p = {1: [], 5: []}
    for i in range(n):
        gallery = np.flatnonzero(ids != ids[i])
        order = gallery[np.argsort(-(feats_n[gallery] @ feats_n[i]))]
        for k in p:
            p[k].append(np.mean(labels[order[:k]] == labels[i]))
    out = core_precision_at_k(feats, labels, ids, ks=(1, 5))
    assert out[1] == pytest.approx(np.mean(p[1]))
    assert out[5] == pytest.approx(np.mean(p[5]))


# -------------------------------------------------------------------------------------- recall@k
def test_recall_at_k_hand():
    sim = [[0.9, 0.3, 0.5], [0.2, 0.8, 0.6]]
    # q0: positive 0 is first.  q1: positive 2 (0.6) is second behind 0.8.
    assert recall_at_k(sim, [0, 2], ks=(1, 2, 3)) == {1: 0.5, 2: 1.0, 3: 1.0}
    # Positive tied with two others at the top: R@1 = 1/3, R@2 = 2/3, R@3 = 1.
    out = recall_at_k([[0.5, 0.5, 0.5, 0.1]], torch.tensor([0]))
    assert out[1] == pytest.approx(1 / 3) and out[2] == pytest.approx(2 / 3) and out[3] == 1.0
    # -inf padding never outranks the positive.
    assert recall_at_k([[0.1, -np.inf, -np.inf]], [0], ks=(1,)) == {1: 1.0}


def test_recall_at_k_matches_argsort():
    rng = np.random.default_rng(10)
    sim = rng.random((50, 12))
    pos = rng.integers(0, 12, 50)
    rank = np.array([np.flatnonzero(np.argsort(-row) == p)[0] + 1 for row, p in zip(sim, pos)])
    out = recall_at_k(sim, pos, ks=(1, 2, 3))
    for k in (1, 2, 3):
        assert out[k] == pytest.approx(np.mean(rank <= k))


# ------------------------------------------------------------------------------------------- NDCG
def test_ndcg_hand():
    # DCG = 1/log2(2) + 1/log2(4) = 1.5;  IDCG (1, 1, 0) = 1 + 1/log2(3) = 1.6309...;  NDCG = 0.91972...
    assert ndcg([1, 0, 1]) == pytest.approx(1.5 / (1 + 1 / LOG2_3))
    assert ndcg([1, 0, 1]) == pytest.approx(0.9197207891481876)
    # k=1 with the relevant item second: 0.  k=2 for (0, 1, 1): (1/log2 3) / (1 + 1/log2 3) = 0.38685...
    assert ndcg([0, 1, 1], k=1) == 0.0
    assert ndcg([0, 1, 1], k=2) == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    # Graded, linear gains: (2, 3) -> (2 + 3/log2 3) / (3 + 2/log2 3).
    assert ndcg([2, 3]) == pytest.approx((2 + 3 / LOG2_3) / (3 + 2 / LOG2_3))
    assert ndcg([1, 1, 0]) == 1.0
    assert math.isnan(ndcg([0, 0, 0]))
    with pytest.raises(ValueError):
        ndcg([1, -1])


def test_ndcg_from_similarity_hand():
    # Ranked 0.9 (rel 0), then a tie {0.5 rel 1, 0.5 rel 0} sharing ranks 2 and 3 with mean gain 1/2:
    # DCG = 1/2 * (1/log2 3 + 1/log2 4) = 0.56546...;  IDCG = 1.
    assert ndcg_from_similarity([0.9, 0.5, 0.5], [0, 1, 0]) == pytest.approx(0.5 * (1 / LOG2_3 + 0.5))
    # k=2 cuts the tie group: only rank 2 counts -> 1/2 * 1/log2 3 over IDCG@2 = 1.
    assert ndcg_from_similarity([0.9, 0.5, 0.5], [0, 1, 0], k=2) == pytest.approx(0.5 / LOG2_3)
    # Excluding the 0.9 item puts the tie first: 1/2 * (1 + 1/log2 3) = 0.81546...
    assert ndcg_from_similarity([[0.9, 0.5, 0.5]], [[0, 1, 0]], exclude=[[True, False, False]]) == pytest.approx(
        0.5 * (1 + 1 / LOG2_3))
    # A query with nothing relevant is skipped: mean over the remaining query only.
    assert ndcg_from_similarity([[0.9, 0.1], [0.9, 0.1]], [[1, 0], [0, 0]]) == 1.0
    assert math.isnan(ndcg_from_similarity([[0.9, 0.1]], [[0, 0]]))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("k", [None, 1, 5])
def test_ndcg_matches_sklearn(ties, k):
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(11)
    sim = rng.random((25, 20))
    if ties:
        sim = np.round(sim, 1)
    rel = (rng.random((25, 20)) < 0.2).astype(float)
    rel[:, 0] = 1.0  # every query has something relevant
    assert ndcg_from_similarity(sim, rel, k=k) == pytest.approx(skm.ndcg_score(rel, sim, k=k), abs=1e-12)
    # Graded relevance too.
    graded = rng.integers(0, 4, (25, 20)).astype(float)
    graded[:, 0] = 3.0
    assert ndcg_from_similarity(sim, graded, k=k) == pytest.approx(skm.ndcg_score(graded, sim, k=k), abs=1e-12)
    # ndcg() on an explicit order equals ndcg_score when there are no ties.
    if not ties:
        order = np.argsort(-sim[0])
        assert ndcg(rel[0][order], k=k) == pytest.approx(skm.ndcg_score(rel[:1], sim[:1], k=k), abs=1e-12)


# -------------------------------------------------------------------------------------------- mIoU
def _masks():
    a1_pred = np.array([[1, 1, 0], [0, 0, 0]])
    a1_gt = np.array([[0, 1, 1], [0, 0, 0]])  # inter 1, union 3
    a2 = np.array([[1, 1, 0], [1, 1, 0]])  # identical pred and gt: inter 4, union 4
    b_pred = np.zeros((2, 3), int)
    b_gt = np.array([[0, 0, 0], [0, 1, 1]])  # inter 0, union 2
    c = np.zeros((2, 3), int)  # class never present, never predicted: union 0
    return [a1_pred, a2, b_pred, c], [a1_gt, a2, b_gt, c], ["A", "A", "B", "C"]


def test_mean_iou_hand():
    preds, gts, classes = _masks()
    # Class A accumulated over the dataset: (1 + 4) / (3 + 4) = 5/7 (a per-image mean would be (1/3 + 1)/2 = 2/3).
    # Class B: 0/2 = 0.  Class C: empty union, left out.  mIoU = (5/7 + 0) / 2 = 5/14.
    assert per_class_iou(preds, gts, classes) == {"A": pytest.approx(5 / 7), "B": 0.0}
    assert mean_iou(preds, gts, classes) == pytest.approx(5 / 14)
    # Without class ids everything is one class: (1 + 4 + 0) / (3 + 4 + 2 + 0) = 5/9.
    assert mean_iou(preds, gts) == pytest.approx(5 / 9)
    # Stacked torch tensors and integer class ids work too.
    stacked = torch.tensor(np.stack(preds)), torch.tensor(np.stack(gts)), torch.tensor([0, 0, 1, 2])
    assert mean_iou(*stacked) == pytest.approx(5 / 14)


def test_mean_iou_edges():
    empty = np.zeros((3, 3))
    assert math.isnan(mean_iou([empty], [empty]))
    assert mean_iou(np.ones((3, 3)), np.ones((3, 3))) == 1.0  # a single (H, W) pair
    with pytest.raises(ValueError):
        mean_iou([np.ones((2, 2))], [np.ones((3, 3))])


def test_mean_iou_matches_sklearn_jaccard():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(12)
    preds, gts = rng.random((6, 10, 10)) < 0.4, rng.random((6, 10, 10)) < 0.3
    classes = [0, 0, 1, 1, 1, 2]
    expected = np.mean([skm.jaccard_score(gts[np.array(classes) == c].ravel(), preds[np.array(classes) == c].ravel())
                        for c in (0, 1, 2)])
    assert mean_iou(preds, gts, classes) == pytest.approx(expected)


# ---------------------------------------------------------------------------------- patch grid mask
def test_patch_grid_mask_coverage():
    mask = np.zeros((4, 4), bool)
    mask[0, 0:2] = True  # top-left 2x2 patch: 2/4 = 50 % covered
    mask[2, 2] = True  # bottom-right patch: 1/4 = 25 %
    np.testing.assert_array_equal(patch_grid_mask(mask, patch_size=2), [[True, False], [False, False]])
    quarter = patch_grid_mask(mask, patch_size=2, min_coverage=0.25)
    np.testing.assert_array_equal(quarter, [[True, False], [False, True]])
    np.testing.assert_array_equal(patch_grid_mask(mask, patch_size=2, min_coverage=0.0), [[True, False], [False, True]])
    np.testing.assert_array_equal(patch_grid_mask(mask, grid=2), [[True, False], [False, False]])


def test_patch_grid_mask_small_object_never_empty():
    mask = np.zeros((4, 4), bool)
    mask[3, 3] = True  # 1/4 of one patch, below 50 %
    np.testing.assert_array_equal(patch_grid_mask(mask, patch_size=2), [[False, False], [False, True]])
    # Two patches tie for the largest coverage: both are marked.
    mask = np.zeros((4, 4), bool)
    mask[0, 1] = mask[0, 2] = True
    np.testing.assert_array_equal(patch_grid_mask(mask, patch_size=2), [[True, True], [False, False]])
    # An empty mask stays empty.
    assert not patch_grid_mask(np.zeros((4, 4)), patch_size=2).any()


def test_patch_grid_mask_batch_torch_and_errors():
    masks = torch.zeros(2, 28, 28)
    masks[0, :14, :14] = 1
    masks[1, 27, 27] = 1
    out = patch_grid_mask(masks, patch_size=14)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bool and out.shape == (2, 2, 2)
    assert out[0].tolist() == [[True, False], [False, False]]
    assert out[1].tolist() == [[False, False], [False, True]]
    with pytest.raises(ValueError):
        patch_grid_mask(masks, patch_size=10)
    with pytest.raises(ValueError):
        patch_grid_mask(masks)
    # A grid that does not divide the mask uses adaptive-pooling bins.
    assert patch_grid_mask(np.ones((10, 10)), grid=3).all()


def test_patch_grid_mask_feeds_average_precision():
    # MOSAIC-style use: heatmap on a 2x2 grid vs the patch mask of a pixel mask.
    mask = np.zeros((28, 28))
    mask[:14, :14] = 1
    heat = np.array([[0.9, 0.2], [0.4, 0.1]])
    assert average_precision(heat, patch_grid_mask(mask, patch_size=14)) == 1.0


def test_pro_without_scipy_uses_fallback(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)  # makes `from scipy import ndimage` raise ImportError
    assert pro_score(PRO_MAP, PRO_GT) == pytest.approx(37 / 48)
