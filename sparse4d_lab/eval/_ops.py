"""Array building blocks shared by the evaluators: distances and neighbour search on the floor plane, assignment.

Everything here works on flat arrays (one row per box or per candidate pair) so that the evaluators can treat
thousands of frames at once instead of looping over frames and boxes in Python.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._codes import int_order, segment_bounds
from .records import EvalInputError

EPS = np.finfo("float").eps


def planar_distance(xy_a: np.ndarray, xy_b: np.ndarray) -> np.ndarray:
    """Euclidean distance on the floor plane, computed as sqrt(dx^2 + dy^2) like the devkits' 2-vector norm."""
    dx = xy_a[..., 0] - xy_b[..., 0]
    dy = xy_a[..., 1] - xy_b[..., 1]
    return np.sqrt(dx * dx + dy * dy)


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p + e == a * b exactly (Dekker's product with Veltkamp's split)."""
    p = a * b
    t = 134217729.0 * a
    ah = t - (t - a)
    al = a - ah
    t = 134217729.0 * b
    bh = t - (t - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def fused_multiply_add(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a * b + c with a single rounding (as an FMA instruction), up to rare double-rounding cases."""
    p, e = _two_product(a, b)
    s = p + c
    bb = s - p
    t = (p - (s - bb)) + (c - bb)
    return s + (t + e)


def blas_style_distances(xy_a: np.ndarray, xy_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Floor-plane distances computed the way `sklearn.metrics.pairwise.euclidean_distances` computes them.

    sklearn expands |a - b|^2 = |a|^2 - 2 a.b + |b|^2 and takes a.b from a BLAS product. OpenBLAS on x86-64
    evaluates that 2-term dot product as one multiplication and one fused multiply-add, in an order that depends
    on the kernel: matrix-matrix (and 1 x 1) adds x_a x_b to y_a y_b, matrix-vector (exactly one side holds a
    single box) the other way round. Coincident points come out at 1e-8 to 1e-6 m instead of 0. The nuScenes
    tracking devkit measures with it, so its figures are reproduced with it too.
    Returns (matrix-matrix distance, matrix-vector distance) per pair.
    """
    xa, ya = np.ascontiguousarray(xy_a[:, 0]), np.ascontiguousarray(xy_a[:, 1])
    xb, yb = np.ascontiguousarray(xy_b[:, 0]), np.ascontiguousarray(xy_b[:, 1])
    norms = xa * xa + ya * ya, xb * xb + yb * yb
    out = []
    for dot in (fused_multiply_add(ya, yb, xa * xb), fused_multiply_add(xa, xb, ya * yb)):
        d2 = -2 * dot
        d2 += norms[0]
        d2 += norms[1]
        out.append(np.sqrt(np.maximum(d2, 0)))
    return out[0], out[1]


def neighbour_pairs(
    group_a: np.ndarray, xy_a: np.ndarray, group_b: np.ndarray, xy_b: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i of a, j of b) in the same group whose centres are at most `radius` apart on the floor plane.

    A uniform grid with cells twice the radius bounds the search: a point in, say, the right half of its cell
    can only have neighbours in that cell or the one to the right, so four cells are looked up per point. The
    cost grows with the number of close pairs rather than with the product of the box counts per frame.
    Returns (ia, ib, distance) in no particular order.
    """
    group_a = np.asarray(group_a, np.int64)
    group_b = np.asarray(group_b, np.int64)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if len(group_a) == 0 or len(group_b) == 0:
        return empty
    cell = 2 * max(float(radius), 1e-9) * (1 + 1e-6)
    ax, ay = np.ascontiguousarray(xy_a[:, 0]), np.ascontiguousarray(xy_a[:, 1])
    bx, by = np.ascontiguousarray(xy_b[:, 0]), np.ascontiguousarray(xy_b[:, 1])
    fbx, fby = bx / cell, by / cell
    cax, cay = np.floor(ax / cell).astype(np.int64), np.floor(ay / cell).astype(np.int64)
    cbx, cby = np.floor(fbx).astype(np.int64), np.floor(fby).astype(np.int64)
    quadrant = (fbx - cbx >= 0.5) * 2 + (fby - cby >= 0.5)  # towards the nearer neighbouring cell per axis
    lox, loy = min(cax.min(), cbx.min()) - 1, min(cay.min(), cby.min()) - 1
    cax -= lox
    cbx -= lox
    cay -= loy
    cby -= loy
    span = np.array([max(cax.max(), cbx.max()) + 2, max(cay.max(), cby.max()) + 2])
    n_groups = int(max(group_a.max(), group_b.max())) + 1
    if float(n_groups) * float(span[0]) * float(span[1]) >= 2.0**62:
        raise EvalInputError("coordinates are too spread out to search for neighbours; are they in metres?")
    ka = (group_a * span[0] + cax) * span[1] + cay
    kb = (group_b * span[0] + cbx) * span[1] + cby
    order_a = np.argsort(ka, kind="stable")
    ka_sorted = ka[order_a]
    cell_start, cell_end = segment_bounds(ka_sorted)
    cell_key, cell_count = ka_sorted[cell_start], cell_end - cell_start
    order_b = np.argsort(kb, kind="stable")
    quadrant_sorted = quadrant[order_b]
    ias, ibs = [], []
    n_cells = len(cell_key)
    for q in range(4):
        members = order_b[quadrant_sorted == q]  # keys still sorted: the searches below go fast
        if members.size == 0:
            continue
        sx, sy = (1 if q >= 2 else -1), (1 if q % 2 else -1)
        for dx in (0, sx):
            # The two cells of this column, (cy, cy + sy), have consecutive keys: one search finds both.
            low = kb[members] + (dx * span[1] + min(0, sy))
            pos = np.minimum(np.searchsorted(cell_key, low), n_cells - 1)
            hit_low = cell_key[pos] == low
            pos_high = np.minimum(pos + hit_low, n_cells - 1)
            hit_high = cell_key[pos_high] == low + 1
            for hit, where in ((hit_low, pos), (hit_high, pos_high)):
                hit = np.flatnonzero(hit)
                if hit.size == 0:
                    continue
                start, count = cell_start[where[hit]], cell_count[where[hit]]
                total = int(count.sum())
                first = np.repeat(start - (np.cumsum(count) - count), count)
                ias.append(order_a[first + np.arange(total)])
                ibs.append(np.repeat(members[hit], count))
    if not ias:
        return empty
    ia = np.concatenate(ias)
    ib = np.concatenate(ibs)
    dx, dy = bx[ib] - ax[ia], by[ib] - ay[ia]
    d = np.sqrt(dx * dx + dy * dy)
    keep = d <= radius
    return ia[keep], ib[keep], d[keep]


def connected_components(n_left: int, n_right: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Component label of every node of a bipartite graph; nodes 0..n_left-1 then n_left..n_left+n_right-1."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as cc

    n = n_left + n_right
    if n == 0:
        return np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(left)), (left, n_left + np.asarray(right))), shape=(n, n))
    _, labels = cc(graph, directed=False)
    return labels.astype(np.int64)


def node_index(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(node index of every element, element count per node) for non-negative integer ids; counting directly
    when the ids are dense enough, through `np.unique` otherwise."""
    ids = np.asarray(ids, np.int64)
    if ids.size == 0:
        return ids, np.zeros(0, np.int64)
    top = int(ids.max()) + 1
    if top <= 4 * ids.size + 1024:
        return ids, np.bincount(ids, minlength=top)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def solve_assignment_groups(
    group: np.ndarray, rows: np.ndarray, cols: np.ndarray, value: np.ndarray, *, maximize: bool
) -> np.ndarray:
    """Choose pairs of many independent assignment problems (one per `group`); returns a mask over the pairs.

    Each problem holds only its candidate pairs; absent pairs are forbidden. With `maximize` the total value of
    the chosen pairs is maximised (values > 0, as TrackEval's score matrices). Otherwise the number of chosen pairs
    is maximised first and their summed cost minimised second, which is what py-motmetrics obtains by giving
    absent pairs a prohibitive cost before calling the Hungarian solver. Components solved without a solver
    call: a pair whose row and column have no other candidate (it belongs to every optimal solution), and a star
    (one row or column with several candidates that have no other; its best pair wins, the first on a tie).
    """
    n = len(group)
    chosen = np.zeros(n, bool)
    if n == 0:
        return chosen
    r_inv, r_cnt = node_index(rows)
    c_inv, c_cnt = node_index(cols)
    deg_r, deg_c = r_cnt[r_inv], c_cnt[c_inv]
    chosen[(deg_r == 1) & (deg_c == 1)] = True
    # Stars: one row (column) whose columns (rows) have no other candidate: the best of its pairs is chosen.
    row_star = (deg_r > 1) & (np.bincount(r_inv, weights=deg_c > 1, minlength=len(r_cnt))[r_inv] == 0)
    col_star = (deg_c > 1) & (np.bincount(c_inv, weights=deg_r > 1, minlength=len(c_cnt))[c_inv] == 0)
    key = -value if maximize else value
    for star, centre, other in ((row_star, r_inv, c_inv), (col_star, c_inv, r_inv)):
        idx = np.flatnonzero(star)
        if idx.size:
            idx = idx[np.lexsort((other[idx], key[idx], centre[idx]))]
            chosen[idx[np.r_[True, centre[idx][1:] != centre[idx][:-1]]]] = True
    hard = np.flatnonzero((deg_r > 1) | (deg_c > 1))
    hard = hard[~(row_star[hard] | col_star[hard])]
    if hard.size == 0:
        return chosen
    # The rest splits into connected components: small ones are enumerated, large ones go to the solver.
    n_r, n_c = len(r_cnt), len(c_cnt)
    comp = connected_components(n_r, n_c, r_inv[hard], c_inv[hard])[r_inv[hard]]
    comp_codes, comp = np.unique(comp, return_inverse=True)
    comp = comp.reshape(-1)
    order = int_order(comp, r_inv[hard], c_inv[hard])
    hard, comp = hard[order], comp[order]
    r_loc = _rank_in_segment(comp, r_inv[hard])
    c_loc = _rank_in_segment(comp, c_inv[hard])
    nr = np.zeros(len(comp_codes), np.int64)
    nc = np.zeros(len(comp_codes), np.int64)
    np.maximum.at(nr, comp, r_loc + 1)
    np.maximum.at(nc, comp, c_loc + 1)
    small = (nr <= _SMALL) & (nc <= _SMALL)
    for shape in np.unique(nr[small] * (_SMALL + 1) + nc[small]).tolist():
        a, b = divmod(shape, _SMALL + 1)
        same_shape = np.flatnonzero(small & (nr == a) & (nc == b))
        chunk = max(1, 2_000_000 // (len(_matchings(a, b)[2]) * max(1, min(a, b))))  # bounds the memory used
        for first in range(0, len(same_shape), chunk):
            comps = same_shape[first : first + chunk]
            sel = np.flatnonzero(np.isin(comp, comps))
            k = np.searchsorted(comps, comp[sel])
            chosen[
                _enumerate_small(k, len(comps), a, b, r_loc[sel], c_loc[sel], hard[sel], value[hard[sel]], maximize)
            ] = True
    big = np.flatnonzero(~small[comp])
    starts, ends = segment_bounds(comp[big])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        idx = hard[big[s:e]]
        chosen[idx[_solve_one(rows[idx], cols[idx], value[idx], maximize)]] = True
    return chosen


_SMALL = 4  # components up to 4 x 4 are solved by enumerating their matchings


def _rank_in_segment(segment: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Dense rank of each value among the distinct values of its segment."""
    out = np.empty(len(segment), np.int64)
    if len(segment) == 0:
        return out
    order = int_order(segment, values)
    seg_s, val_s = segment[order], values[order]
    seg_new = np.r_[True, seg_s[1:] != seg_s[:-1]]
    dense = np.cumsum(seg_new | np.r_[True, val_s[1:] != val_s[:-1]]) - 1
    out[order] = dense - np.maximum.accumulate(np.where(seg_new, dense, 0))
    return out


_MATCHINGS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _matchings(nr: int, nc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All matchings of an nr x nc bipartite graph as padded (row, col) index arrays, plus their sizes."""
    if (nr, nc) not in _MATCHINGS:
        from itertools import combinations, permutations

        found: list[list[tuple[int, int]]] = []
        for size in range(min(nr, nc) + 1):
            for rs in combinations(range(nr), size):
                for cs in permutations(range(nc), size):
                    found.append(list(zip(rs, cs, strict=True)))
        width = max(min(nr, nc), 1)
        r = np.full((len(found), width), -1, np.int64)
        c = np.full((len(found), width), -1, np.int64)
        for m, pairs in enumerate(found):
            for q, (i, j) in enumerate(pairs):
                r[m, q], c[m, q] = i, j
        _MATCHINGS[(nr, nc)] = (r, c, np.array([len(f) for f in found]))
    return _MATCHINGS[(nr, nc)]


def _enumerate_small(
    k: np.ndarray,
    n_k: int,
    nr: int,
    nc: int,
    r: np.ndarray,
    c: np.ndarray,
    pair: np.ndarray,
    value: np.ndarray,
    maximize: bool,
) -> np.ndarray:
    """Best matching of each of `n_k` small components (same shape) by enumeration; returns chosen pair ids.

    Maximum total value, or maximum cardinality then minimum total cost; the first enumerated on a tie."""
    mat = np.full((n_k, nr, nc), np.nan)
    mat[k, r, c] = value
    where = np.full((n_k, nr, nc), -1, np.int64)
    where[k, r, c] = pair
    mr, mc, size = _matchings(nr, nc)
    pad = mr < 0
    vals = mat[:, np.where(pad, 0, mr), np.where(pad, 0, mc)]  # [K, M, width]
    vals = np.where(pad[None], 0.0, vals)
    total = vals.sum(axis=2)
    valid = ~np.isnan(total)
    if maximize:
        best = np.argmax(np.where(valid, total, -np.inf), axis=1)
    else:
        card = np.where(valid, size[None, :], -1)
        top = card == card.max(axis=1, keepdims=True)
        best = np.argmin(np.where(top, total, np.inf), axis=1)
    rows_b, cols_b = mr[best], mc[best]  # [K, width]
    kk = np.repeat(np.arange(n_k), rows_b.shape[1]).reshape(rows_b.shape)
    ok = rows_b >= 0
    return where[kk[ok], rows_b[ok], cols_b[ok]]


def _solve_one(rows: np.ndarray, cols: np.ndarray, value: np.ndarray, maximize: bool) -> np.ndarray:
    """Indices (into the given pairs) chosen by one dense assignment problem."""
    r_u, ri = np.unique(rows, return_inverse=True)
    c_u, ci = np.unique(cols, return_inverse=True)
    shape = (len(r_u), len(c_u))
    where = np.full(shape, -1, np.int64)
    where[ri, ci] = np.arange(len(rows))
    if maximize:
        mat = np.zeros(shape)
        mat[ri, ci] = value
        rr, cc = linear_sum_assignment(-mat)
        keep = mat[rr, cc] > 0 + EPS
    else:
        # Absent pairs cost more than any set of present ones: maximum cardinality first, then minimum cost.
        big = 2 * min(shape) * (float(np.abs(value).max()) + 1) + 1
        mat = np.full(shape, big)
        mat[ri, ci] = value
        rr, cc = linear_sum_assignment(mat)
        keep = where[rr, cc] >= 0
    return where[rr[keep], cc[keep]]


def group_means_like_numpy(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group mean equal bit for bit to `np.mean` of each group (numpy sums pairwise, not left to right)."""
    out = np.full(n_groups, np.nan)
    if len(values) == 0:
        return out
    order = np.argsort(group, kind="stable")
    g = group[order]
    v = values[order]
    starts, ends = segment_bounds(g)
    lengths = ends - starts
    for length in np.unique(lengths).tolist():
        sel = np.flatnonzero(lengths == length)
        block = v[starts[sel][:, None] + np.arange(length)[None, :]]
        out[g[starts[sel]]] = np.mean(block, axis=1)
    return out
