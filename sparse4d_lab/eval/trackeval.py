"""TrackEval (1.0.0): HOTA, CLEAR and Identity on centre distances.

Similarity is `max(0, 1 - d / zero_distance)` with zero_distance = 2 x gate (4 m); CLEAR and Identity are gated
at similarity >= 0.5 (distance <= 2 m). CLEAR continues only the pairings of the previous processed timestep
(timesteps without ground truth or without tracker boxes are skipped, keeping continuity across them), counts a
switch against the last matched id, MT above 0.8 (strict), Frag as tracked stretches minus one, and MOTP is a
mean similarity. HOTA matches each frame by the global alignment score times the similarity and averages over
alpha = 0.05 ... 0.95.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._association import associate_trackeval_clear, id_global_matching
from ._codes import combine_keys
from ._ops import EPS, solve_assignment_groups
from .tracking_frames import TrackingFrames

HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)  # TrackEval's array_labels, floating-point values included


def similarity_of(dist: np.ndarray, zero_distance: float) -> np.ndarray:
    """TrackEval-style similarity of a centre distance: 1 at 0, falling linearly to 0 at `zero_distance`."""
    return np.maximum(0.0, 1.0 - dist / zero_distance)


def hota_per_sequence(frames: TrackingFrames, zero_distance: float = 4.0) -> dict[str, np.ndarray]:
    """TrackEval's HOTA sums per sequence: HOTA_TP/FN/FP, LocA, AssA, AssRe, AssPr, each [S, 19 alphas]."""
    n_seq = int(frames.frame_seq.max()) + 1 if len(frames.frame_seq) else 0
    n_a = len(HOTA_ALPHAS)
    gt_seq = frames.frame_seq[frames.gt_frame]
    hyp_seq = frames.frame_seq[frames.hyp_frame]
    n_gt_dets = np.bincount(gt_seq, minlength=n_seq).astype(float)
    n_hyp_dets = np.bincount(hyp_seq, minlength=n_seq).astype(float)
    gt_tr, hyp_tr = frames.gt_track, frames.hyp_track
    gt_count = np.bincount(gt_tr, minlength=frames.n_gt_tracks).astype(float)
    hyp_count = np.bincount(hyp_tr, minlength=frames.n_hyp_tracks).astype(float)

    pairs = frames.pairs_within(zero_distance)
    sim = similarity_of(pairs.dist, zero_distance)
    pairs, sim = pairs.subset(sim > 0), sim[sim > 0]
    # Potential matches: similarity normalised like an IoU within the frame, summed over frames per id pair.
    row_sum = np.bincount(pairs.gt, weights=sim, minlength=len(gt_tr))
    col_sum = np.bincount(pairs.hyp, weights=sim, minlength=len(hyp_tr))
    denom = row_sum[pairs.gt] + col_sum[pairs.hyp] - sim
    sim_iou = np.where(denom > 0 + EPS, sim / np.where(denom > 0 + EPS, denom, 1.0), 0.0)
    g_tr, h_tr = gt_tr[pairs.gt], hyp_tr[pairs.hyp]
    id_key = combine_keys(g_tr, h_tr)
    uniq_key, key_of_pair = np.unique(id_key, return_inverse=True)
    key_of_pair = key_of_pair.reshape(-1)
    potential = np.bincount(key_of_pair, weights=sim_iou, minlength=len(uniq_key))
    first = np.unique(key_of_pair, return_index=True)[1]
    k_g, k_h = g_tr[first], h_tr[first]
    alignment = potential / (gt_count[k_g] + hyp_count[k_h] - potential)
    score = alignment[key_of_pair] * sim
    chosen = solve_assignment_groups(frames.gt_frame[pairs.gt], pairs.gt, pairs.hyp, score, maximize=True)

    m_sim, m_key = sim[chosen], key_of_pair[chosen]
    m_seq = gt_seq[pairs.gt[chosen]]
    # A match counts for the alphas its similarity reaches: alpha index < level.
    level = np.searchsorted(HOTA_ALPHAS - EPS, m_sim, side="right")

    def per_alpha(group: np.ndarray, n_group: int, weights: np.ndarray | None = None) -> np.ndarray:
        """[n_group, alphas]: summed weights of the matches of each group reaching each alpha."""
        hist = np.bincount(group * (n_a + 1) + level, weights=weights, minlength=n_group * (n_a + 1))
        hist = hist.reshape(n_group, n_a + 1)
        return np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]

    tp = per_alpha(m_seq, n_seq)
    loc = per_alpha(m_seq, n_seq, m_sim)
    km, k_idx = np.unique(m_key, return_inverse=True)
    k_idx = k_idx.reshape(-1)
    mc = per_alpha(k_idx, len(km))  # matches per id pair and alpha
    mg, mh = k_g[km], k_h[km]
    k_seq = np.zeros(len(km), np.int64)
    k_seq[k_idx] = m_seq
    gt_c, hyp_c = gt_count[mg][:, None], hyp_count[mh][:, None]
    out = {"HOTA_TP": tp, "HOTA_FN": n_gt_dets[:, None] - tp, "HOTA_FP": n_hyp_dets[:, None] - tp}
    for name, val in (
        ("AssA", mc / np.maximum(1, gt_c + hyp_c - mc)),
        ("AssRe", mc / np.maximum(1, gt_c)),
        ("AssPr", mc / np.maximum(1, hyp_c)),
    ):
        summed = np.zeros((n_seq, n_a))
        np.add.at(summed, k_seq, mc * val)
        out[name] = summed / np.maximum(1, tp)
    out["LocA"] = np.maximum(1e-10, loc) / np.maximum(1e-10, tp)
    return out


def hota_combine(per_seq: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """TrackEval's `combine_sequences` and `_compute_final_fields` for HOTA (arrays over alpha)."""
    res: dict[str, Any] = {f: per_seq[f].sum(axis=0) for f in ("HOTA_TP", "HOTA_FN", "HOTA_FP")}
    for f in ("AssRe", "AssPr", "AssA"):
        res[f] = (per_seq[f] * per_seq["HOTA_TP"]).sum(axis=0) / np.maximum(1.0, res["HOTA_TP"])
    loca_weighted = (per_seq["LocA"] * per_seq["HOTA_TP"]).sum(axis=0)
    res["LocA"] = np.maximum(1e-10, loca_weighted) / np.maximum(1e-10, res["HOTA_TP"])
    res["DetRe"] = res["HOTA_TP"] / np.maximum(1, res["HOTA_TP"] + res["HOTA_FN"])
    res["DetPr"] = res["HOTA_TP"] / np.maximum(1, res["HOTA_TP"] + res["HOTA_FP"])
    res["DetA"] = res["HOTA_TP"] / np.maximum(1, res["HOTA_TP"] + res["HOTA_FN"] + res["HOTA_FP"])
    res["HOTA"] = np.sqrt(res["DetA"] * res["AssA"])
    res["OWTA"] = np.sqrt(res["DetRe"] * res["AssA"])
    res["HOTA(0)"] = float(res["HOTA"][0])
    res["LocA(0)"] = float(res["LocA"][0])
    res["HOTALocA(0)"] = res["HOTA(0)"] * res["LocA(0)"]
    return res


def trackeval_clear(frames: TrackingFrames, zero_distance: float = 4.0, threshold: float = 0.5) -> dict[str, float]:
    """TrackEval's CLEAR metrics (summed over sequences, final fields recomputed)."""
    pairs = frames.pairs_within(zero_distance * (1.0 - threshold) * (1 + 1e-9) + 1e-12)
    sim = similarity_of(pairs.dist, zero_distance)
    keep = sim >= threshold - EPS
    pairs, sim = pairs.subset(keep), sim[keep]
    n_gt = len(frames.gt_frame)
    # Processed timesteps: at least one ground truth and one tracker box; each one's predecessor in its sequence.
    n_f = len(frames.frame_seq)
    processed = (np.bincount(frames.gt_frame, minlength=n_f) > 0) & (np.bincount(frames.hyp_frame, minlength=n_f) > 0)
    prev_processed = np.full(n_f, -2, np.int64)
    proc = np.flatnonzero(processed)
    if proc.size > 1:
        same = frames.frame_seq[proc[1:]] == frames.frame_seq[proc[:-1]]
        prev_processed[proc[1:][same]] = proc[:-1][same]
    gt_pair, idsw, starts = associate_trackeval_clear(
        n_gt,
        len(frames.hyp_frame),
        frames.gt_track,
        frames.hyp_track,
        frames.gt_frame,
        prev_processed,
        pairs,
        sim,
        frames.n_gt_tracks,
    )
    matched = gt_pair >= 0
    motp_sum = float(np.sum(sim[gt_pair[matched]]))
    tr = frames.gt_track
    count = np.bincount(tr, minlength=frames.n_gt_tracks).astype(float)
    n_matched = np.bincount(tr, weights=matched, minlength=frames.n_gt_tracks)
    n_starts = np.bincount(tr[starts], minlength=frames.n_gt_tracks)
    present = count > 0
    ratio = n_matched[present] / count[present]
    res = {
        "CLR_TP": float(matched.sum()),
        "CLR_FN": float(n_gt - matched.sum()),
        "CLR_FP": float(len(frames.hyp_frame) - matched.sum()),
        "IDSW": float(idsw.sum()),
        "MT": float(np.sum(ratio > 0.8)),
        "PT": float(np.sum(ratio >= 0.2) - np.sum(ratio > 0.8)),
        "Frag": float(np.sum(n_starts[n_starts > 0] - 1)),
        "MOTP_sum": motp_sum,
        "CLR_Frames": float(frames.num_frames),
    }
    res["ML"] = float(frames.n_gt_tracks) - res["MT"] - res["PT"]
    tp, fn, fp, idsw_ = res["CLR_TP"], res["CLR_FN"], res["CLR_FP"], res["IDSW"]
    n_ids = res["MT"] + res["ML"] + res["PT"]
    res.update(
        {
            "MTR": res["MT"] / max(1.0, n_ids),
            "MLR": res["ML"] / max(1.0, n_ids),
            "PTR": res["PT"] / max(1.0, n_ids),
            "CLR_Re": tp / max(1.0, tp + fn),
            "CLR_Pr": tp / max(1.0, tp + fp),
            "MODA": (tp - fp) / max(1.0, tp + fn),
            "MOTA": (tp - fp - idsw_) / max(1.0, tp + fn),
            "MOTP": motp_sum / max(1.0, tp),
            "sMOTA": (motp_sum - fp - idsw_) / max(1.0, tp + fn),
            "CLR_F1": tp / max(1.0, tp + 0.5 * fn + 0.5 * fp),
            "FP_per_frame": fp / max(1.0, res["CLR_Frames"]),
        }
    )
    return res


def trackeval_identity(frames: TrackingFrames, zero_distance: float = 4.0, threshold: float = 0.5) -> dict[str, float]:
    """TrackEval's Identity metrics (IDF1, IDP, IDR and counts): pairs count when similarity >= threshold."""
    pairs = frames.pairs_within(zero_distance * (1.0 - threshold) * (1 + 1e-9) + 1e-12)
    pairs = pairs.subset(similarity_of(pairs.dist, zero_distance) >= threshold)
    idtp = float(
        id_global_matching(
            frames.gt_track[pairs.gt], frames.hyp_track[pairs.hyp], frames.n_gt_tracks, frames.n_hyp_tracks
        )
    )
    idfn = float(len(frames.gt_frame)) - idtp
    idfp = float(len(frames.hyp_frame)) - idtp
    return {
        "IDF1": idtp / max(1.0, idtp + 0.5 * idfp + 0.5 * idfn),
        "IDR": idtp / max(1.0, idtp + idfn),
        "IDP": idtp / max(1.0, idtp + idfp),
        "IDTP": idtp,
        "IDFN": idfn,
        "IDFP": idfp,
    }


def trackeval_metrics(
    frames: TrackingFrames | Sequence[Mapping[str, Any]], zero_distance: float = 4.0, threshold: float = 0.5
) -> dict[str, float]:
    """HOTA, CLEAR and Identity with TrackEval's semantics and names (array fields averaged over alpha)."""
    frames = frames if isinstance(frames, TrackingFrames) else TrackingFrames.from_frame_lists(frames)
    hota = hota_combine(hota_per_sequence(frames, zero_distance))
    out: dict[str, float] = {}
    for f in ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA"):
        out[f] = float(np.mean(hota[f]))
    for f in ("HOTA(0)", "LocA(0)", "HOTALocA(0)"):
        out[f] = float(hota[f])
    out.update(trackeval_clear(frames, zero_distance, threshold))
    out.update(trackeval_identity(frames, zero_distance, threshold))
    return out
