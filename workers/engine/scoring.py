"""Exact scoring and top-k selection (arrays in, arrays out; no store, no rules).

Every score either search path returns comes from :func:`exact_scores` (float64
accumulation of one pair's inner product, rounded to float32: independent of a
candidate's position or a batch's shape), and results are ordered by (score desc, id
asc), so the batch and the single-query paths return identical rankings and scores. Both
first score in float32 (BLAS or FAISS, whose error is below half of :func:`tie_eps`) and
only rescore what float32 cannot settle.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from core.errors import InvalidInputError
from core.rules import select_top_k


def tie_eps(dim: int) -> float:
    """Twice the error bound of a float32 dot product of unit vectors (~dim * 2^-24)."""
    return 1e-6 + dim * 1.2e-7


def exact_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise inner products ``a[i] . b[i]`` accumulated in float64, rounded to float32.

    Each pair is reduced by the same code over one contiguous float64 row, so the value
    depends only on the two vectors (never on a batch's shape or a candidate's position),
    and equal vectors tie exactly.
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    return np.einsum("ij,ij->i", a, b).astype(np.float32)


def normalise(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Float32, L2-normalised rows; rejects wrong shapes, non-finite or zero vectors."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or (dim is not None and v.shape[1] != dim):
        raise InvalidInputError(
            f"vectors must have shape (n, {dim if dim is not None else 'dim'}), got {v.shape}",
            field="vector",
        )
    if not np.isfinite(v).all():
        raise InvalidInputError("vectors contain NaN or infinite values", field="vector")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InvalidInputError("a vector has zero norm", field="vector")
    return np.ascontiguousarray(v / norms, dtype=np.float32)


def set_threads(threads: int) -> None:
    """BLAS and FAISS thread count of this process."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
        faiss.omp_set_num_threads(threads)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


def dots(vectors: np.ndarray, qv: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Float32 inner products of ``qv`` with ``vectors[rows]``, read in place (FAISS),
    without gathering the rows into a copy first (2.5x faster)."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    out = np.empty(rows.size, dtype=np.float32)
    if rows.size:
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(out), faiss.swig_ptr(qv), faiss.swig_ptr(vectors),
            faiss.swig_ptr(rows), vectors.shape[1], 1, rows.size,
        )  # fmt: skip
    return out


def pick_one(
    rows: np.ndarray,
    s: np.ndarray,
    qv: np.ndarray,
    k: int,
    cap: int,
    *,
    vectors: np.ndarray,
    groups: np.ndarray,
    ids: Sequence[str],
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one query's candidate ``rows`` with float32 scores ``s``: (rows, exact
    scores), at most ``cap`` per group (``groups[rows]``; 0 = unlimited).

    A greedy selection on ``s`` gives k picks whose lowest score bounds the k-th exact
    score; every candidate that could still be picked by exact scores lies within ``eps``
    of that bound (the float32 error is below half of it), so only those are rescored
    with :func:`exact_scores` and selected by (score desc, id asc).
    """
    n = s.size
    comp = groups[rows]
    t = min(n, max(4 * k, 32))
    floor = -np.inf
    while True:
        part = np.argpartition(s, n - t)[n - t :] if t < n else np.arange(n)
        part = part[np.argsort(-s[part], kind="stable")]
        got, last, per = 0, -1, {}
        for j, c in zip(part.tolist(), comp[part].tolist(), strict=True):
            if cap:
                m = per.get(c, 0)
                if m >= cap:
                    continue
                per[c] = m + 1
            got += 1
            if got == k:
                last = j
                break
        if last >= 0:
            floor = float(s[last]) - eps
            break
        if t == n:
            break  # fewer than k can be picked: every candidate counts
        t = min(n, 4 * t)
    near = np.flatnonzero(s >= floor)
    cand = rows[near]
    exact = exact_scores(np.broadcast_to(qv, (cand.size, qv.size)), vectors[cand])
    cand_ids = [ids[r] for r in cand.tolist()]
    sel = np.asarray(select_top_k(exact, cand_ids, comp[near], k, cap), dtype=np.int64)
    return cand[sel], exact[sel]


def top_t(S: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``t`` scores per row of ``S`` (desc) and their columns, with FAISS's heap
    (several times faster than ``np.argpartition``); empty slots have column -1."""
    m, n = S.shape
    S = np.ascontiguousarray(S, dtype=np.float32)
    D = np.empty((m, t), dtype=np.float32)
    Ix = np.empty((m, t), dtype=np.int64)
    h = faiss.float_minheap_array_t()
    h.k, h.nh = t, m
    h.val, h.ids = faiss.swig_ptr(D), faiss.swig_ptr(Ix)
    h.heapify()
    h.addn(n, faiss.swig_ptr(S))
    h.reorder()
    return D, Ix


def order_pick(ps, part_c, keep, rank_c, comp_c, k, cap):
    """Sort each row's kept candidates by (score desc, id rank asc) and pick the first
    ``k`` under the per-group cap. Returns (sorted scores, sorted columns, pick mask)."""
    ps = np.where(keep, ps, -np.inf)
    o = np.lexsort((rank_c[part_c], -ps), axis=1)
    part_c = np.take_along_axis(part_c, o, axis=1)
    ps = np.take_along_axis(ps, o, axis=1)
    keep = np.isfinite(ps)
    if cap:
        # occurrence of each group among the earlier candidates of its row: a stable sort
        # by group keeps score order within a group, so the position in its run counts
        comp = np.where(keep, comp_c[part_c], -1)
        m, t = comp.shape
        order = np.argsort(comp, axis=1, kind="stable")
        sc = np.take_along_axis(comp, order, axis=1)
        pos = np.broadcast_to(np.arange(t), (m, t))
        start = np.ones((m, t), dtype=bool)
        start[:, 1:] = sc[:, 1:] != sc[:, :-1]
        run0 = np.maximum.accumulate(np.where(start, pos, 0), axis=1)
        occ = np.empty((m, t), dtype=np.int64)
        np.put_along_axis(occ, order, pos - run0, axis=1)
        keep &= occ < cap
    pick = keep & (np.cumsum(keep, axis=1) <= k)
    return ps, part_c, pick
