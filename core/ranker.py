"""The learned ranker: LightGBM lambdarank over (seeker, candidate) pairs that pass the rules.

Candidates are exactly the postings the rule kernel lets through
(:func:`core.matching.jobs_mask`: region, commute, education, career, expiry, applied/hidden);
the pool per seeker is the top ``pool`` of them by the formula (:func:`core.matching.job_scores`)
united with the top ``pool`` by each collaborative score (item-kNN, EASE, user-kNN, walk, times
shown), so postings people like this seeker applied to are reached even when their text is far.
The ranker only orders the pool; the company cap is applied after
(:func:`core.rules.select_top_k`), so the learned order never breaks a rule.

Features (:data:`FEATURES`, version :data:`FEATURE_VERSION`) come from what the project has
(formula, hybrid cosine of the résumé, of the history, occupation relation, distance, wage,
education and career margins, posting age and deadline) and what the log adds (item-kNN, EASE,
user-kNN, the 4-step walk, popularity, seeker activity, seen/clicked before; :mod:`core.collab`).
A saved ranker is a directory with ``model.txt`` (LightGBM), ``manifest.json`` (feature list
and version, data fingerprint, config) and ``metrics.json``; a ranker of another feature
version is refused on load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from core.collab import CollabConfig, CollabModel
from core.errors import InvalidInputError
from core.match_block import occ_relation_codes, sort_ranks
from core.matching import MatchConfig, PostingSide, SeekerQuery, cosine
from core.rules import haversine_km, select_top_k

FEATURE_VERSION = 4
FEATURES: tuple[str, ...] = (
    "formula", "similarity", "history_similarity", "occupation_relation", "distance_km",
    "wage_ratio", "education_margin", "career_margin", "posting_age_days", "days_to_deadline",
    "coapply_knn", "ease", "popularity", "seeker_activity", "seen_before", "clicked_before",
    "history_occupation_share", "user_knn", "walk",
)
RANKER_REASONS = {  # feature -> what a person reads when it drove the rank
    "coapply_knn": "함께 지원되는 공고",
    "user_knn": "비슷한 구직자들이 지원한 공고",
    "walk": "지원 이력에서 이어지는 공고",
    "ease": "지원 이력으로 본 추천 공고",
    "history_similarity": "지원·관심 공고와 비슷한 공고",
    "popularity": "지원이 많은 공고",
    "similarity": "이력서와 내용이 비슷한 공고",
    "occupation_relation": "희망직종과 가까운 공고",
    "clicked_before": "관심을 보인 공고",
    "seen_before": "최근 보았던 공고",
    "history_occupation_share": "지원·관심 이력과 같은 직종",
}
DRIVER_TEXTS: tuple[str, ...] = tuple(RANKER_REASONS.values())
FRESH_GRID: tuple[int, ...] = (0, 4, 8, 12, 18, 24)  # at most a fifth of a 120-list


@dataclass(frozen=True)
class RankerConfig:
    """Pool size and LightGBM knobs (selection of the rounds on the validation seekers)."""

    pool: int = 300
    negatives: int = 100  # pool items kept per training group besides the positives
    rounds: int = 300
    learning_rate: float = 0.05
    # small trees, many windows: chosen on the validation nDCG@10 of generated data (seed 3,
    # the held-out day never seen), where 31 leaves over 3 windows overfit
    num_leaves: int = 7
    min_data_in_leaf: int = 100
    # the KMU validation stopped at round 29 with 30 (the walk feature makes the gains
    # slow); 100 reached round 101: validation recall@5 0.0693 vs 0.0678, hit@120 0.3946
    # vs 0.3916
    early_stopping: int = 100
    valid_share: float = 0.2
    windows: int = 5  # training days (a log with times) or random hold-outs (without)
    # places of a k-list kept for postings nobody applied to yet (None: the smallest of
    # FRESH_GRID whose validation cold-posting hit@120 is not below the formula's)
    fresh_slots: int | None = None
    # training seekers per window, sampled down to this (the validation ones are all kept):
    # bounds the time of a national log; the generated 20k corpus and KMU stay below it
    train_seekers: int = 6000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("pool", "negatives", "rounds", "num_leaves", "min_data_in_leaf",
                     "early_stopping", "windows", "train_seekers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        f = self.fresh_slots
        if f is not None and (isinstance(f, bool) or not isinstance(f, int) or f < 0):
            raise ValueError(f"fresh_slots must be None or an int >= 0, got {f!r}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate!r}")
        if not 0 < self.valid_share < 1:
            raise ValueError(f"valid_share must be in (0, 1), got {self.valid_share!r}")


@dataclass
class Pools:
    """Candidate pools of many seekers as flat arrays (``row``: seeker index; ``pos``:
    posting position; ``X``: features in :data:`FEATURES` order)."""

    seeker_ids: list[str]
    row: np.ndarray
    pos: np.ndarray
    X: np.ndarray
    formula: np.ndarray


_BLOCK = 256  # seekers per collaborative block: (256, items) float32 rows, four of them


def pool_features(qs: Sequence[SeekerQuery], side: PostingSide, index, collab: CollabModel,
                  cfg: MatchConfig, pool: int,
                  history_occ: Mapping[str, int] | None = None) -> Pools:
    """Rule-passing pools and their features for seekers ``qs`` (``index``: a
    :class:`workers.matching.index.JobIndex`-like object whose ``passing(qs, cfg)`` gives each
    seeker's rule-passing candidates, formula scores and cosines over the rows of ``side``,
    computed in blocks of seekers with the same desired regions). ``history_occ``: the
    occupation code of each history posting by id, for an index that holds only part of
    the postings (a match shard); None: read from ``side``."""
    ref = cfg.ref_days()
    # ties go to the smaller posting id: its rank among the index's ids (cached by JobIndex)
    rank = getattr(index, "id_rank", None)
    rank = sort_ranks(side.ids) if rank is None else rank
    # item codes, seen postings' rows and id -> row of this side: once per side and model
    codes_all, seen_pos, at = collab.aligned(side.ids)
    rows, poss, feats, forms = [], [], [], []
    histories = [collab.history.get(q.seeker_id, ()) for q in qs]
    activity = collab.seeker_activity([q.seeker_id for q in qs])
    block: tuple[int, tuple[np.ndarray, ...]] = (-1, ())
    passing = index.passing(qs, cfg)
    for i, q in enumerate(qs):
        if i // _BLOCK != block[0]:  # the collaborative rows of the next block of seekers
            a = i // _BLOCK * _BLOCK
            block = (i // _BLOCK, collab.rows_block([s.seeker_id for s in qs[a:a + _BLOCK]],
                                                    histories[a:a + _BLOCK]))
        if passing[i] is None:
            continue
        idx, f, sims = passing[i]
        codes = codes_all[idx]
        # the seeker's collaborative rows once, dense over the log's postings
        knn, ease, users, walk = (
            np.where(codes >= 0, r[i % _BLOCK][np.maximum(codes, 0)], 0.0).astype(np.float32)
            if histories[i] else np.zeros(idx.size, np.float32) for r in block[1])
        seen_n, clicked = _seen_of(collab, q.seeker_id, seen_pos, idx)
        keep = _pool_of(f, (knn, ease, users, walk, seen_n), rank[idx], pool)
        idx, f, codes = idx[keep], f[keep], codes[keep]
        knn, ease, users, walk = knn[keep], ease[keep], users[keep], walk[keep]
        x = _content_features(q, side, idx, f, ref, sims[keep])
        x[:, FEATURES.index("seen_before")] = np.log1p(seen_n[keep])
        x[:, FEATURES.index("clicked_before")] = clicked[keep]
        if history_occ is None:
            hocc = side.occ[np.fromiter((at[h] for h in histories[i] if h in at), np.int64)]
        else:
            hocc = np.fromiter((history_occ[h] for h in histories[i] if h in history_occ),
                               np.int64)
        x[:, FEATURES.index("history_occupation_share")] = \
            ((side.occ[idx][:, None] == hocc[None, :])
             & (side.occ[idx][:, None] >= 0)).mean(axis=1) if hocc.size else 0.0
        x[:, FEATURES.index("coapply_knn")] = knn
        x[:, FEATURES.index("ease")] = ease
        x[:, FEATURES.index("popularity")] = collab.popularity(codes)
        x[:, FEATURES.index("seeker_activity")] = activity[i]
        x[:, FEATURES.index("user_knn")] = users
        x[:, FEATURES.index("walk")] = walk
        rows.append(np.full(idx.size, i, np.int64))
        poss.append(idx)
        feats.append(x)
        forms.append(f)
    if not rows:
        return Pools([q.seeker_id for q in qs], np.empty(0, np.int64), np.empty(0, np.int64),
                     np.empty((0, len(FEATURES)), np.float32), np.empty(0))
    return Pools([q.seeker_id for q in qs], np.concatenate(rows), np.concatenate(poss),
                 np.vstack(feats), np.concatenate(forms))


def _seen_of(collab: CollabModel, seeker_id: str, seen_pos: np.ndarray, idx: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(times shown, clicked) of the candidates ``idx`` (sorted positions) for one seeker
    (``seen_pos``: the row of each posting of ``collab.seen_vocab``, -1 if none)."""
    n = np.zeros(idx.size, np.float32)
    k = np.zeros(idx.size, np.float32)
    codes, shown, clicked = collab.seen_codes(seeker_id)
    if codes.size:
        p = seen_pos[codes]
        c = np.minimum(np.searchsorted(idx, p), idx.size - 1)
        hit = (p >= 0) & (idx[c] == p)
        n[c[hit]] = shown[hit]
        k[c[hit]] = clicked[hit]
    return n, k


def _pool_of(formula: np.ndarray, signals: Sequence[np.ndarray], rank: np.ndarray,
             pool: int) -> np.ndarray:
    """Positions of the top ``pool`` by formula united with the top ``pool`` (> 0) of each
    collaborative signal (item-kNN, EASE, user-kNN, walk, times shown); ties by posting id
    (``rank``: the ids' sort ranks), sorted."""
    keep = np.zeros(formula.size, dtype=bool)
    keep[np.lexsort((rank, -formula))[:pool]] = True
    for signal in signals:
        hit = np.flatnonzero(signal > 0)
        if hit.size:
            keep[hit[np.lexsort((rank[hit], -signal[hit]))[:pool]]] = True
    return np.flatnonzero(keep)


def _content_features(q: SeekerQuery, side: PostingSide, idx: np.ndarray, formula: np.ndarray,
                      ref: int, sims: np.ndarray) -> np.ndarray:
    x = np.full((idx.size, len(FEATURES)), np.nan, dtype=np.float32)
    x[:, 0] = formula
    x[:, 1] = sims
    if q.history_vector is not None:
        x[:, 2] = cosine(q.history_vector[None, :], side.vectors[idx])[0]
    occ = np.full((1, 3), -1, np.int64)
    c = [int(v) for v in q.occupations[:3]]
    occ[0, :len(c)] = c
    x[:, 3] = occ_relation_codes(occ, side.occ[idx])[0]
    if q.home is not None:
        x[:, 4] = haversine_km(q.home[0], q.home[1], side.lat[idx], side.lng[idx])
    if q.desired_wage:
        w = side.monthly_wage[idx]
        x[:, 5] = np.where(np.isnan(w), np.nan, np.log(np.maximum(w, 1.0) / q.desired_wage))
    x[:, 6] = q.education - side.education[idx].astype(np.float32)
    x[:, 7] = q.career_years - np.where(side.experienced[idx], np.maximum(1, side.min_years[idx]),
                                        0)
    x[:, 8] = ref - side.registered_days[idx]
    closes = side.closes_days[idx]
    x[:, 9] = np.where(closes == np.iinfo(np.int32).max, np.nan, closes - ref)
    return x


def one_pair_features(q: SeekerQuery, posting: Mapping, vector: np.ndarray,
                      collab: CollabModel, cfg: MatchConfig,
                      rows: Mapping[str, Mapping] | None = None) -> np.ndarray:
    """The features of one (seeker, posting) pair, scalar arithmetic: the reference the
    vectorised :func:`pool_features` is tested against (``rows``: posting rows by id, for
    the occupations of the seeker's history)."""
    import math

    from core.matching import best_relation

    ref = cfg.ref_days()
    v = np.asarray(vector, np.float64)
    sim = float(np.float32(np.dot(np.asarray(q.vector, np.float64), v)))
    hs = math.nan if q.history_vector is None else \
        float(np.float32(np.dot(np.asarray(q.history_vector, np.float64), v)))
    rel = ("same_code", "same_mid", "same_major", "other").index(
        best_relation(q.occupations, posting["occupation_code"]))
    dist = math.nan if q.home is None else float(haversine_km(
        q.home[0], q.home[1], posting["lat"], posting["lng"]))
    w = posting.get("monthly_wage")
    wr = math.nan if not q.desired_wage or w is None else math.log(max(w, 1.0) / q.desired_wage)
    need = max(1, int(posting.get("min_career_years") or 0)) \
        if posting["career"] == "experienced" else 0
    epoch = 719163  # date(1970, 1, 1).toordinal()
    reg = posting["registered_on"].toordinal() - epoch
    closes = posting.get("closes_on")
    left = math.nan if closes is None else closes.toordinal() - epoch - ref
    hist = collab.history.get(q.seeker_id, ())
    code = collab.codes([posting["posting_id"]])
    knn, ease = collab.pair_scores([hist], np.zeros(1, np.int64), code)
    pop = float(collab.popularity(code)[0])
    act = float(collab.seeker_activity([q.seeker_id])[0])
    shown, clicked = 0.0, 0.0
    for pid, n, k in zip(*collab.seen(q.seeker_id), strict=True):
        if pid == posting["posting_id"]:
            shown, clicked = float(n), float(k)
    occs = [rows[h]["occupation_code"] for h in hist if rows is not None and h in rows]
    share = sum(o is not None and o == posting["occupation_code"] for o in occs) / len(occs) \
        if occs else 0.0
    users, walk = 0.0, 0.0
    if hist and code[0] >= 0:
        users = float(collab.user_knn_row(q.seeker_id, hist)[code[0]])
        walk = float(collab.walk_row(hist)[code[0]])
    return np.array([np.nan, sim, hs, rel, dist, wr, q.education - posting["min_education_level"],
                     q.career_years - need, ref - reg, left, knn[0], ease[0], pop, act,
                     math.log1p(shown), clicked, share, users, walk], dtype=np.float32)


class Ranker:
    """A trained LightGBM ranker with its manifest."""

    def __init__(self, booster, manifest: dict) -> None:
        self.booster = booster
        self.manifest = manifest
        self._attribution: list | None = None

    @property
    def fresh_slots(self) -> int:
        """Places of a list kept for postings nobody applied to yet (chosen at training)."""
        return int(self.manifest.get("config", {}).get("fresh_slots", 0))

    def score(self, X: np.ndarray) -> np.ndarray:
        """Ranker scores of feature rows (float64)."""
        if X.shape[0] == 0:
            return np.empty(0)
        return np.asarray(self.booster.predict(X, num_threads=1), dtype=np.float64)

    def save(self, out: Path) -> Path:
        """Write ``model.txt``, ``manifest.json`` and ``metrics.json`` under ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(out / "model.txt"))
        (out / "manifest.json").write_text(json.dumps(self.manifest, ensure_ascii=False,
                                                      indent=1))
        (out / "metrics.json").write_text(json.dumps(self.manifest.get("metrics", {}),
                                                     ensure_ascii=False, indent=1))
        return out

    @classmethod
    def load(cls, path: Path) -> Ranker:
        """Load a saved ranker; refuses another feature version or feature list."""
        import lightgbm as lgb

        path = Path(path)
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{path}: not a ranker directory ({exc})",
                                    field="ranker") from None
        if manifest.get("feature_version") != FEATURE_VERSION or \
                tuple(manifest.get("features", ())) != FEATURES:
            raise InvalidInputError(
                f"{path}: ranker of feature version {manifest.get('feature_version')!r}, this "
                f"jobrec computes version {FEATURE_VERSION}: retrain it with jobrec train-ranker",
                field="ranker")
        try:
            booster = lgb.Booster(model_file=str(path / "model.txt"))
        except lgb.basic.LightGBMError as exc:
            raise InvalidInputError(f"{path}: unreadable model.txt ({exc})",
                                    field="ranker") from None
        return cls(booster, manifest)

    def driver_codes(self, X: np.ndarray) -> np.ndarray:
        """Per row, the index into :data:`DRIVER_TEXTS` of the learned signal that lifted it
        most: the feature of :data:`RANKER_REASONS` with the largest positive path
        attribution (Saabas: along each tree's path, the change of the tree's value at every
        split on the feature); -1 where none lifted it."""
        if X.shape[0] == 0:
            return np.empty(0, np.int64)
        c = self.attributions(X)
        best = np.argmax(c, axis=1)
        return np.where(c[np.arange(c.shape[0]), best] > 0, best, -1).astype(np.int64)

    def attributions(self, X: np.ndarray) -> np.ndarray:
        """(rows, len(RANKER_REASONS)) path attributions of the reason features, each one a
        prediction of a copy of the model whose leaves hold that feature's attribution (so
        LightGBM's own predictor does the walk: far cheaper than its TreeSHAP)."""
        if self._attribution is None:
            self._attribution = attribution_boosters(self.booster,
                                                     [FEATURES.index(n) for n in RANKER_REASONS])
        if X.shape[0] == 0:
            return np.empty((0, len(RANKER_REASONS)))
        return np.column_stack([b.predict(X, num_threads=1) for b in self._attribution])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_attribution": None}  # rebuilt where it is used

    def drivers(self, X: np.ndarray) -> list[str | None]:
        """:meth:`driver_codes` as the Korean texts (None: no learned signal lifted it)."""
        return [DRIVER_TEXTS[c] if c >= 0 else None for c in self.driver_codes(X).tolist()]


def leaf_attributions(booster, features: Sequence[int]) -> list[np.ndarray]:
    """Per tree, a (leaves, len(features)) table: for each leaf the sum, over the splits on
    its path that test each feature, of the child's value minus the node's (Saabas); the
    root's value plus the sum over every feature of a leaf's row is the leaf's value."""
    col = {f: j for j, f in enumerate(features)}
    tables = []
    for tree in booster.dump_model()["tree_info"]:
        t = np.zeros((tree["num_leaves"], len(features)))
        stack = [(tree["tree_structure"], np.zeros(len(features)))]
        while stack:
            node, acc = stack.pop()
            if "split_feature" not in node:
                t[node.get("leaf_index", 0)] = acc
                continue
            j = col.get(node["split_feature"])
            for child in (node["left_child"], node["right_child"]):
                v = child["internal_value"] if "split_feature" in child else child["leaf_value"]
                a = acc.copy()
                if j is not None:
                    a[j] += v - node["internal_value"]
                stack.append((child, a))
        tables.append(t)
    return tables


def attribution_boosters(booster, features: Sequence[int]) -> list:
    """One copy of ``booster`` per feature whose leaf values are that feature's
    :func:`leaf_attributions`: its prediction is the feature's attribution of a row."""
    import lightgbm as lgb

    tables = leaf_attributions(booster, features)
    # tree_sizes gives each tree's byte length for a parallel parse: stale once the leaves are
    # rewritten, and without it LightGBM reads the trees in turn
    lines = [line for line in booster.model_to_string().split("\n")
             if not line.startswith("tree_sizes=")]
    at = [i for i, line in enumerate(lines) if line.startswith("leaf_value=")]
    if len(at) != len(tables):
        raise InvalidInputError(f"model has {len(at)} trees' leaves, its dump {len(tables)}",
                                field="ranker")
    out = []
    for j in range(len(features)):
        for i, t in zip(at, tables, strict=True):
            lines[i] = "leaf_value=" + " ".join(repr(float(v)) for v in t[:, j])
        out.append(lgb.Booster(model_str="\n".join(lines)))
    return out


def rank_lists(ranker: Ranker | None | str, pools: Pools, side: PostingSide, k: int,
               max_per_company: int, fresh: int | None = None, scores: np.ndarray | None = None
               ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per seeker the top-``k`` of its pool under the company cap as (positions, scores,
    rows of ``pools``), by the ranker (the formula when ``ranker`` is None; ``"untrained"``:
    one constant score, so the order is the posting ids': what a ranker knows before any
    training). Ties go to the smaller posting id, as everywhere. With a ranker, the best
    ``fresh`` (default: the ranker's ``fresh_slots``) places of a list go to the best
    postings nobody applied to yet, even where known ones score more. ``scores``: the
    ranker's scores of ``pools.X`` computed already (where the pools were built)."""
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
    elif isinstance(ranker, str):
        if ranker != "untrained":
            raise ValueError(f"ranker must be a Ranker, None or 'untrained', got {ranker!r}")
        s = np.zeros(pools.row.size)
    else:
        s = pools.formula if ranker is None else ranker.score(pools.X)
    if fresh is None:
        fresh = ranker.fresh_slots if isinstance(ranker, Ranker) else 0
    cold = pools.X[:, FEATURES.index("popularity")] == 0
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    cut = np.flatnonzero(np.diff(pools.row)) + 1
    for part in np.split(np.arange(pools.row.size), cut):
        if part.size == 0:
            continue
        pos = pools.pos[part]
        ids, comp, sc = side.ids[pos], side.company[pos], s[part]
        t = np.asarray(select_top_k(sc, ids, comp, k, max_per_company), dtype=np.int64)
        if fresh and cold[part[t]].sum() < min(fresh, int(cold[part].sum())):
            t = _with_fresh(sc, ids, comp, cold[part], k, max_per_company, fresh)
        out[pools.seeker_ids[pools.row[part[0]]]] = (pos[t], sc[t], part[t])
    return out


def _with_fresh(sc: np.ndarray, ids: np.ndarray, comp: np.ndarray, cold: np.ndarray,
                k: int, cap: int, fresh: int) -> np.ndarray:
    """The top-``k`` (``cold``: a mask of the never-applied-to rows) redone so that postings with applications hold at most ``k -
    fresh`` places: one pass in score order (then id) under the company cap, the known
    postings stopping at their quota; places still free are filled by the rest in order."""
    order = sorted(np.flatnonzero(np.isfinite(sc)).tolist(), key=lambda j: (-float(sc[j]), ids[j]))
    quota = k - min(fresh, k)
    picked, per, known, left = [], {}, 0, []
    for j in order:
        if len(picked) == k:
            break
        c = comp[j]
        if cap and per.get(c, 0) >= cap:
            continue
        if not cold[j] and known >= quota:
            left.append(j)
            continue
        known += not cold[j]
        per[c] = per.get(c, 0) + 1
        picked.append(j)
    for j in left:  # too few fresh ones under the cap: known ones take their places
        if len(picked) == k:
            break
        if not (cap and per.get(comp[j], 0) >= cap):
            per[comp[j]] = per.get(comp[j], 0) + 1
            picked.append(j)
    return np.array(sorted(picked, key=lambda j: (-float(sc[j]), ids[j])), dtype=np.int64)


def rank_pools(ranker: Ranker | None | str, pools: Pools, side: PostingSide, k: int,
               max_per_company: int, fresh: int | None = None
               ) -> dict[str, list[tuple[int, float]]]:
    """:func:`rank_lists` as (position, score) pairs per seeker."""
    return {sid: list(zip(p.tolist(), sc.tolist(), strict=True))
            for sid, (p, sc, _) in rank_lists(ranker, pools, side, k, max_per_company,
                                              fresh).items()}


def fingerprint(*frames: pl.DataFrame) -> str:
    """A short hash of the training data (row counts and content hashes)."""
    h = hashlib.sha256()
    for f in frames:
        h.update(str(f.height).encode())
        h.update(str(int(f.hash_rows().sum())).encode())
    return h.hexdigest()[:16]


def split_targets(interactions: pl.DataFrame, seed: int, event: str = "applied",
                  windows: int = 1) -> list[tuple[pl.DataFrame, dict[str, set[str]], str]]:
    """Training windows (feature log, targets, how), newest first: with times, the
    applications of each of the last ``windows`` days are the targets and the events before
    that day the features; without, ``windows`` draws of one random application per seeker
    with at least two held out (``seed``)."""
    import datetime as dt

    app = interactions.filter(pl.col("event") == event)
    out = []
    if interactions.height and interactions["at"].null_count() < interactions.height:
        days = sorted({d for d in app["at"].dt.date().drop_nulls().to_list()}, reverse=True)
        for day in days[:windows]:
            cut = dt.datetime.combine(day, dt.time(0))
            feat = interactions.filter(pl.col("at") < cut)
            tgt = app.filter((pl.col("at") >= cut) &
                             (pl.col("at") < cut + dt.timedelta(days=1)))
            out.append((feat, _target_sets(tgt),
                        f"time: applications on {day} are targets, earlier events features"))
        return out
    g = app.select("seeker_id", "posting_id").unique().sort("seeker_id", "posting_id") \
        .with_columns(pl.len().over("seeker_id").alias("_n")).filter(pl.col("_n") >= 2)
    for w in range(windows):
        # each window holds out another random application: more groups to learn from
        rng = np.random.default_rng([seed, w])
        gw = g.with_columns(pl.Series("_r", rng.random(g.height)))
        tgt = gw.sort("seeker_id", "_r").group_by("seeker_id", maintain_order=True).first() \
            .select("seeker_id", "posting_id")
        feat = interactions.join(tgt, on=["seeker_id", "posting_id"], how="anti")
        out.append((feat, _target_sets(tgt),
                    f"no times: one random application per seeker (>= 2) held out as the "
                    f"target (draw {w + 1} of {windows})"))
    return out


def _target_sets(tgt: pl.DataFrame) -> dict[str, set[str]]:
    targets: dict[str, set[str]] = {}
    for s, p in tgt.select("seeker_id", "posting_id").iter_rows():
        targets.setdefault(s, set()).add(p)
    return targets


def _groups(pools: Pools, side: PostingSide, targets: Mapping[str, set[str]],
            negatives: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Training groups: each seeker's positives in its pool plus ``negatives`` sampled pool
    items (groups without a positive in the pool cannot teach and are left out)."""
    keep_rows, labels, sizes, who = [], [], [], []
    cut = np.flatnonzero(np.diff(pools.row)) + 1
    for part in np.split(np.arange(pools.row.size), cut):
        if part.size == 0:
            continue
        sid = pools.seeker_ids[pools.row[part[0]]]
        tg = targets.get(sid)
        if not tg:
            continue
        y = np.isin(side.ids[pools.pos[part]], list(tg))
        if not y.any():
            continue
        neg = part[~y]
        if neg.size > negatives:
            neg = np.sort(rng.choice(neg, negatives, replace=False))
        # pool order (posting position), not positives first: LightGBM's nDCG breaks score
        # ties by row order, and a first tree's ties would otherwise look like skill
        rows = np.sort(np.concatenate([part[y], neg]))
        keep_rows.append(rows)
        labels.append(np.isin(rows, part[y]).astype(np.float64))
        sizes.append(rows.size)
        who.append(sid)
    if not keep_rows:
        raise InvalidInputError("no training seeker has its target application among its "
                                "rule-passing candidates: nothing to learn from",
                                field="interactions")
    return np.concatenate(keep_rows), np.concatenate(labels), np.array(sizes), who


@dataclass
class Window:
    """One training window: the seekers' queries as of its reference date, the log before
    it, the target applications and the match configuration (its reference date)."""

    queries: Sequence[SeekerQuery]
    feature_log: pl.DataFrame
    targets: Mapping[str, set[str]]
    cfg: MatchConfig


def train_ranker(windows: Sequence[Window], side: PostingSide, index,
                 rcfg: RankerConfig | None = None, collab_cfg: CollabConfig | None = None,
                 extra_manifest: Mapping | None = None, incumbent: Ranker | None = None
                 ) -> tuple[Ranker, dict]:
    """Fit LightGBM lambdarank on the pools of the seekers with a target in each window;
    validation split by seeker (hash of the id and the seed: a seeker is on one side in
    every window), rounds selected on validation only (nDCG@120). ``incumbent`` (the
    serving version) is measured on the same validation seekers, for the promotion gate."""
    import lightgbm as lgb

    rcfg = rcfg or RankerConfig()
    rng = np.random.default_rng(rcfg.seed)

    def held_aside(sid: str) -> bool:
        return int(hashlib.md5(f"{rcfg.seed}:{sid}".encode()).hexdigest()[:8], 16) / 2**32 \
            < rcfg.valid_share

    parts, who, sampled = [], [], []
    newest = None
    for wi, w in enumerate(windows):
        collab = CollabModel(w.feature_log, collab_cfg)
        qs = [q for q in w.queries if q.seeker_id in w.targets]
        fit = [i for i, q in enumerate(qs) if not held_aside(q.seeker_id)]
        if len(fit) > rcfg.train_seekers:
            drop = set(np.asarray(fit)[rng.choice(len(fit), len(fit) - rcfg.train_seekers,
                                                  replace=False)].tolist())
            qs = [q for i, q in enumerate(qs) if i not in drop]
        sampled.append(min(len(fit), rcfg.train_seekers))
        pools = pool_features(qs, side, index, collab, w.cfg, rcfg.pool)
        if wi == 0:
            newest = (pools, w, set(collab.items.tolist()))
        try:
            rows, y, sizes, ids = _groups(pools, side, w.targets, rcfg.negatives, rng)
        except InvalidInputError:
            continue
        parts.append((pools.X[rows], y, sizes))
        who += ids
    if not parts:
        raise InvalidInputError("no training seeker has its target application among its "
                                "rule-passing candidates: nothing to learn from",
                                field="interactions")
    X = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    sizes = np.concatenate([p[2] for p in parts])
    val = np.array([held_aside(s) for s in who])
    if val.all() or not val.any():
        val = np.zeros(len(who), bool)
        val[: max(1, len(who) // 5)] = True
    grp = np.repeat(np.arange(len(who)), sizes)
    tr_rows, va_rows = np.isin(grp, np.flatnonzero(~val)), np.isin(grp, np.flatnonzero(val))
    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [120, 10],
              "learning_rate": rcfg.learning_rate, "num_leaves": rcfg.num_leaves,
              "min_data_in_leaf": rcfg.min_data_in_leaf, "seed": rcfg.seed,
              "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbose": -1,
              "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1,
              "feature_fraction_seed": rcfg.seed, "bagging_seed": rcfg.seed}
    dtr = lgb.Dataset(X[tr_rows], y[tr_rows], group=sizes[~val], feature_name=list(FEATURES),
                      free_raw_data=False)
    dva = lgb.Dataset(X[va_rows], y[va_rows], group=sizes[val], reference=dtr)
    hist: dict = {}
    booster = lgb.train(params, dtr, rcfg.rounds, valid_sets=[dva], valid_names=["valid"],
                        callbacks=[lgb.early_stopping(rcfg.early_stopping, verbose=False,
                                                      first_metric_only=True),
                                   lgb.record_evaluation(hist)])
    ranker = Ranker(booster, {})
    metrics = {"windows": len(windows), "train_seekers_per_window": sampled,
               "valid_groups": int(val.sum()),
               "train_groups": int((~val).sum()), "train_rows": int(tr_rows.sum()),
               "best_iteration": booster.best_iteration,
               "valid_ndcg@120_curve": [round(v, 5) for v in hist["valid"]["ndcg@120"]],
               "valid_ndcg@10_curve": [round(v, 5) for v in hist["valid"]["ndcg@10"]]}
    # hit-rates of the newest window's validation seekers over their whole pools (targets
    # outside the pool count as misses: every validation seeker with a target, not only those
    # whose pool holds it), the formula on the same pools beside it
    pools, w, known = newest
    va_seekers = {s for s in w.targets if held_aside(s)} if val.any() and not val.all() \
        else {s for s, v in zip(who, val, strict=True) if v} & set(w.targets)
    metrics["valid_seekers"] = len(va_seekers)
    fresh, metrics["fresh_slots"] = _choose_fresh(ranker, pools, side, w, va_seekers, known,
                                                  rcfg.fresh_slots)
    config = {**asdict(rcfg), "fresh_slots": fresh}
    ranker.manifest = {"config": config}  # the validation lists below use the chosen places
    models = [("ranker", ranker), ("formula", None), ("untrained", "untrained")]
    if incumbent is not None:
        models.append(("incumbent", incumbent))
    for name, model in models:
        metrics[name] = valid_metrics(model, pools, side, w.targets, va_seekers, w.cfg)
    metrics["valid_not_worse_than_formula"] = \
        metrics["ranker"]["hit@120"] >= metrics["formula"]["hit@120"]
    manifest = {"feature_version": FEATURE_VERSION, "features": list(FEATURES),
                "config": config, "collab": asdict(collab_cfg or CollabConfig()),
                "metrics": metrics, **(extra_manifest or {})}
    ranker.manifest = manifest
    return ranker, metrics


def _choose_fresh(ranker: Ranker, pools: Pools, side: PostingSide, w: Window,
                  seekers: set[str], known: set[str], fixed: int | None) -> tuple[int, dict]:
    """The places kept for never-applied-to postings: ``fixed``, or the smallest of
    :data:`FRESH_GRID` whose hit@120 on the validation targets nobody had applied to is not
    below the formula's there (the largest when none is); every choice's validation figures."""
    cold = {s: {p for p in w.targets[s] if p not in known} for s in seekers}
    cold = {s: v for s, v in cold.items() if v}
    grid = FRESH_GRID if fixed is None else (fixed,)
    rows = {"cold_targets": len(cold)}
    if cold:
        rows["formula_cold_hit@120"] = valid_metrics(None, pools, side, cold, set(cold),
                                                     w.cfg)["hit@120"]
    for f in grid:
        rows[str(f)] = {"hit@120": valid_metrics(ranker, pools, side, w.targets, seekers, w.cfg,
                                                 f)["hit@120"],
                        "cold_hit@120": valid_metrics(ranker, pools, side, cold, set(cold), w.cfg,
                                                      f)["hit@120"] if cold else None}
    if fixed is not None or not cold:
        chosen = grid[0] if fixed is not None else 0
    else:
        ok = [f for f in grid if rows[str(f)]["cold_hit@120"] >= rows["formula_cold_hit@120"]]
        chosen = ok[0] if ok else grid[-1]
    rows["chosen"] = chosen
    return chosen, rows


def valid_metrics(ranker: Ranker | None | str, pools: Pools, side: PostingSide,
                  targets: Mapping[str, set[str]], seekers: set[str], cfg: MatchConfig,
                  fresh: int | None = None) -> dict:
    """hit@10 / hit@120 / nDCG@10 of the seekers ``seekers`` over their whole pools."""
    # membership by seeker row number: np.isin over an object array of ids sorts millions
    # of Python strings per call (minutes at 100k seekers; the fresh choice calls it 17 times)
    seekers = set(seekers)
    want = np.fromiter((i for i, s in enumerate(pools.seeker_ids) if s in seekers), np.int64)
    keep = np.isin(pools.row, want) if pools.row.size else np.zeros(0, bool)
    sub = Pools(pools.seeker_ids, pools.row[keep], pools.pos[keep], pools.X[keep],
                pools.formula[keep])
    lists = rank_pools(ranker, sub, side, 120, cfg.max_per_company, fresh)
    return list_metrics({s: [str(side.ids[p]) for p, _ in v] for s, v in lists.items()},
                        {s: targets[s] for s in seekers})


def list_metrics(lists: Mapping[str, Sequence[str]], held: Mapping[str, set[str]],
                 n_items: int | None = None) -> dict:
    """recall@5, hit@10, hit@120, nDCG@10 and coverage of ranked lists against held-out sets."""
    r5, h10, h120, nd = [], [], [], []
    for sid, truth in held.items():
        got = list(lists.get(sid, ()))
        rel = [p in truth for p in got]
        r5.append(sum(rel[:5]) / len(truth))
        h10.append(any(rel[:10]))
        h120.append(any(rel[:120]))
        dcg = sum(1.0 / np.log2(i + 2) for i, r in enumerate(rel[:10]) if r)
        ideal = sum(1.0 / np.log2(i + 2) for i in range(min(len(truth), 10)))
        nd.append(dcg / ideal)
    out = {"seekers": len(held), "recall@5": float(np.mean(r5)) if r5 else 0.0,
           "hit@10": float(np.mean(h10)) if h10 else 0.0,
           "hit@120": float(np.mean(h120)) if h120 else 0.0,
           "ndcg@10": float(np.mean(nd)) if nd else 0.0}
    if n_items:
        out["coverage"] = len({p for v in lists.values() for p in v[:120]}) / n_items
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
