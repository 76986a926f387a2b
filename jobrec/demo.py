"""``jobrec demo``: the whole product on one machine, end to end, in a few minutes.

generate a corpus (or use ``--postings``) → train W-BERT (or reuse the model in the workdir)
→ local Ray → batch refresh → shard actors → gRPC server → a real gRPC client prints a few
recommendations with their distances and the rules they passed → serve until Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from jobrec.console import FileProgress, Stages, log_to_file, ray_session_dir, stdout_to

DEFAULT_WORKDIR = Path(".jobrec") / "demo"
DEFAULT_N = 5000
# The demo's training budget: the default recipe on fewer postings and epochs, so that a
# fresh 2-core machine prints results within 3 minutes (5,000 postings x 1 + 3 epochs took
# 419 s there); the quality it prints is measured on this model's held-out split.
DEFAULT_TRAIN_N = 2000
DEMO_EPOCHS = 2
DEFAULT_COURSES = 3000


def demo_train_config(seed: int, n_train: int):
    """The :class:`training.config.TrainConfig` of a model the demo trains."""
    from training.config import TrainConfig

    return TrainConfig(size="tiny", seed=seed, max_samples=n_train, epochs=DEMO_EPOCHS,
                       mlm_epochs=1)


def occupation_label(code: str | None) -> str:
    """A KECO code as a person reads it: ``"890000 (제조 단순 종사원)"`` (the code alone when
    the KECO table lacks it)."""
    from core.reference import occupations

    occ = occupations().get(code or "")
    return f"{code} ({occ.name})" if occ is not None else str(code)


def _education(level: int | None) -> str:
    from core.schema import EDUCATION_LEVELS

    return EDUCATION_LEVELS.get(level, str(level)) if level is not None else "?"


def register(subparsers) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser(
        "demo",
        help="run the whole pipeline locally and serve it",
        description="Generate postings, train (or reuse) W-BERT, build the Ray shards, run "
        "the batch refresh, start the gRPC server and query it.",
    )
    p.add_argument("--postings", type=Path, default=None, help="canonical posting table to use")
    p.add_argument("--n", type=int, default=DEFAULT_N, help="postings to generate")
    p.add_argument(
        "--train-n", type=int, default=DEFAULT_TRAIN_N,
        help="postings the demo model is trained on (only when no trained model exists)",
    )  # fmt: skip
    p.add_argument("--model", type=Path, default=None, help="use this trained model directory")
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="demo files")
    p.add_argument("--port", type=int, default=50051, help="gRPC port (0 = any free port)")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--k", type=int, default=5, help="recommendations shown per posting")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--courses", type=int, default=DEFAULT_COURSES,
                   help="training courses to generate (shown next to a posting)")
    p.add_argument("--once", action="store_true", help="exit after the printout")
    p.set_defaults(func=run_demo)


def _corpus(args, steps: Stages, ref: dt.date):
    import polars as pl

    from server.runtime import load_postings

    if args.postings is not None:
        steps.start(f"loading postings from {args.postings}")
        df = load_postings(args.postings)
        path = args.postings
    else:
        path = args.workdir / f"postings-{args.n}-{args.seed}.parquet"
        if path.exists():
            steps.start(f"reusing generated postings {path}")
            df = pl.read_parquet(path)
        else:
            from core.synth import generate_postings

            steps.start(f"generating {args.n} realistic postings")
            df = generate_postings(args.n, args.seed, ref_date=ref)
            path.parent.mkdir(parents=True, exist_ok=True)
            df.write_parquet(path)
    steps.done(f"{df.height} postings, {df['sido'].n_unique()} provinces")
    return df, path


def _model(args, steps: Stages, postings) -> Path:
    from encoding.encoder import is_trained_model_dir

    if args.model is not None:
        steps.start(f"using the model in {args.model}")
        steps.done()
        return args.model
    from encoding.encoder import default_model_dir

    # the model `jobrec train` wrote, else one this demo trained before
    for model_dir in (default_model_dir(), args.workdir / "model"):
        if is_trained_model_dir(model_dir):
            steps.start(f"reusing the W-BERT model in {model_dir}")
            steps.done()
            return model_dir
    model_dir = args.workdir / "model"
    n_train = min(args.train_n, postings.height)
    cfg = demo_train_config(args.seed, n_train)
    steps.start(f"training W-BERT (tiny) on {n_train} postings, {cfg.effective_mlm_epochs} MLM + "
                f"{cfg.epochs} fine-tuning epochs, under Ray Train (once, then reused)")
    from training.progress import epoch_progress
    from training.ray_train import PROGRESS_LOG
    from training.train import train_model

    # the same code path as `jobrec train` (Ray Train, default recipe) on the demo's budget
    work = model_dir.resolve() / ".work"
    planned = {"mlm": cfg.effective_mlm_epochs, "finetune": cfg.epochs}
    bar = FileProgress(
        lambda: [work / phase / PROGRESS_LOG for phase in planned],
        lambda lines: epoch_progress(lines, planned), "train",
    )
    # what training prints (data summary, Ray Train's own lines) goes to the log file
    with stdout_to(args.log_file.path), bar:
        metrics = train_model(postings, model_dir, cfg)
    major = metrics.get("wbert", {}).get("major", {}).get("accuracy")
    base = metrics.get("tfidf_logreg", {}).get("major", {}).get("accuracy")
    steps.done(
        f"{metrics.get('timings', {}).get('train_total_s', 0):.0f}s of training "
        f"({bar.n}/{bar.total} epochs); held-out KECO major accuracy {major:.3f} (TF-IDF "
        f"baseline {base:.3f}; a demo budget: `jobrec train` trains the full recipe)"
        if major is not None and base is not None
        else "trained"
    )
    return model_dir


def _rules_passed(q: dict, c: dict, rec, rules) -> list[str]:
    """The hard rules candidate ``c`` passed for viewed posting ``q``, spelled out."""
    from core.rules import passes, radius_for
    from core.schema import EDUCATION_LEVELS

    out = [f"distance {rec.distance_km:.1f} km <= {radius_for(q['sido'], rules):.0f} km"]
    out.append(
        f"education {EDUCATION_LEVELS[c['min_education_level']]} <= "
        f"{EDUCATION_LEVELS[q['min_education_level']]}"
    )
    if q["career"] == "any":
        out.append("career: any (no filter)")
    else:
        out.append(
            f"career {c['career']} ({c['min_career_years'] or 0}y) fits the viewed {q['career']} "
            f"posting ({q['min_career_years'] or 0}y)"
        )
    closes = c.get("closes_on")
    out.append(f"open until {closes}" if closes else "open-ended")
    ok = passes(q, c, rules, rec.distance_km)
    return out if ok else [*out, "!! rule check failed"]


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo pipeline; serve until Ctrl-C unless ``--once``."""
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.workdir.mkdir(parents=True, exist_ok=True)
    import ray  # noqa: F401  (imported first: it installs the log handlers replaced below)

    args.log_file = log_to_file(args.workdir / "demo.log")
    try:
        return _pipeline(args)
    finally:
        args.log_file.restore()


def _pipeline(args: argparse.Namespace) -> int:
    t_all = time.perf_counter()
    ref = dt.date.today()
    steps = Stages(6)
    postings, postings_path = _corpus(args, steps, ref)

    steps.start("starting a local Ray")
    from workers.actors import init_ray

    # actors' output stays in Ray's session logs: on the driver it would be every worker's
    # progress line again, plus Ray Train's controller polling warnings
    init_ray(None, log_to_driver=False)
    steps.done(f"logs: {args.log_file} and {ray_session_dir()}")

    model_dir = _model(args, steps, postings)

    steps.start(f"batch refresh of {postings.height} postings (k=10, {args.shards} shards)")
    from core.synth import generate_courses
    from workers.jobs.refresh import run_refresh

    recs_path = args.workdir / "recs.parquet"
    emb_path = args.workdir / "embeddings.parquet"
    courses_path = args.workdir / f"courses-{args.courses}-{args.seed}.parquet"
    course_recs_path = args.workdir / "course_recs.parquet"
    generate_courses(args.courses, args.seed, ref_date=ref).write_parquet(courses_path)
    report = run_refresh(
        postings_path, model_dir, recs_path, k=10, ref_date=ref, num_shards=args.shards,
        embeddings_out=emb_path, courses_path=courses_path, courses_out=course_recs_path,
    )  # fmt: skip
    steps.done(
        f"{report.recommendations} recommendations -> {recs_path} "
        f"({report.short_postings} postings with fewer than 10); courses per posting -> "
        f"{course_recs_path}; hybrid weight {report.encoder['hybrid_weight']} "
        f"({report.encoder['weight_source']})"
    )

    steps.start("building the shard actors and starting the gRPC server")
    from server.app import BackgroundServer, JobrecServer, ServerConfig
    from server.runtime import build_backend, serving_encoding

    # as `jobrec serve --embeddings`: the refresh's lexical half, found through the vectors
    chosen = serving_encoding(model_dir, postings, embeddings=emb_path)
    if chosen.warning:
        print(f"warning: {chosen.warning}", flush=True)
    encoder, vectors = chosen.encoder, chosen.vectors
    backend, rules = build_backend(postings, vectors, shards=args.shards, ref_date=ref)
    from server.runtime import load_courses_into

    course_rules = load_courses_into(backend, courses_path, postings, encoder, ref_date=ref)
    server = BackgroundServer(JobrecServer(
        backend, encoder, rules, ServerConfig(host="127.0.0.1", port=args.port),
        course_rules=course_rules,
    ))  # fmt: skip
    port = server.start()
    steps.done(f"listening on 127.0.0.1:{port} ({backend.courses_loaded} training courses loaded)")

    steps.start("querying the server over gRPC")
    lines = _show(port, postings, recs_path, args.k, rules)
    steps.done("3 indexed postings by id, 1 new posting inline")
    print("\n".join(lines), flush=True)
    _show_matching(postings, encoder, ref)

    print(f"\nfirst results after {time.perf_counter() - t_all:.0f}s in total", flush=True)
    try:
        if args.once:
            return 0
        print(
            f"\nserving jobrec.v1.RecommendationService on 127.0.0.1:{port} (Ctrl-C to stop)\n"
            f'  grpcurl -plaintext -d \'{{"posting_id": "{postings["posting_id"][0]}", '
            f'"k": 5}}\' 127.0.0.1:{port} jobrec.v1.RecommendationService/SimilarPostings',
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
        return 0
    finally:
        server.stop()
        backend.shutdown()


def _show(port: int, postings, recs_path: Path, k: int, rules) -> list[str]:
    """Call the server like an internal client would; return what it says, as lines."""
    out: list[str] = []
    import grpc
    import polars as pl

    from server import convert
    from server.generated.jobrec.v1 import recommendation_pb2 as pb
    from server.generated.jobrec.v1 import recommendation_pb2_grpc as pb_grpc

    batch = pl.read_parquet(recs_path)
    by_id = {r["posting_id"]: r for r in postings.iter_rows(named=True)}
    # a few postings from different provinces that have k recommendations
    counts = batch.group_by("posting_id").len().filter(pl.col("len") >= k)
    pool = postings.join(counts, on="posting_id").unique("sido", keep="first", maintain_order=True)
    queries = pool["posting_id"].to_list()[:3] or postings["posting_id"].to_list()[:3]

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.RecommendationServiceStub(channel)
        for qid in queries:
            q = by_id[qid]
            resp = stub.SimilarPostings(pb.SimilarPostingsRequest(posting_id=qid, k=k), timeout=10)
            out.append(f"\n  {q['title']} — {q['company']} ({q['region']}), {qid}, "
                       f"KECO {occupation_label(q.get('occupation_code'))}")
            for rec in resp.recommendations:
                c = by_id[rec.posting_id]
                out.append(
                    f"    {rec.rank}. {rec.title} — {rec.company} ({rec.region})  "
                    f"score {rec.score:.3f}, {rec.distance_km:.1f} km"
                )
                out.append("       rules passed: " + "; ".join(_rules_passed(q, c, rec, rules)))
            want = (
                batch.filter(pl.col("posting_id") == qid)
                .sort("rank")
                .head(len(resp.recommendations))
            )
            got = [r.posting_id for r in resp.recommendations]
            # batch and online paths share one scoring function: results must be identical
            verdict = "yes" if want["rec_posting_id"].to_list() == got else "NO"
            out.append(f"       same as the batch refresh: {verdict}")
            if qid == queries[0]:
                out.extend(_show_courses(channel, qid, k))
        # a new posting that is not indexed, sent inline and encoded by the server
        q = dict(by_id[queries[0]])
        q["posting_id"] = ""
        q["title"] = f"[신규] {q['title']}"
        resp = stub.SimilarPostings(
            pb.SimilarPostingsRequest(posting=convert.posting_from_row(q), k=3), timeout=30
        )
        out.append(f"\n  new posting sent inline: {q['title']} ({q['region']})")
        for rec in resp.recommendations:
            out.append(
                f"    {rec.rank}. {rec.title} — {rec.company}  "
                f"score {rec.score:.3f}, {rec.distance_km:.1f} km"
            )
    return out


def _show_matching(postings, encoder, ref: dt.date) -> None:
    """Two-sided matching on the same corpus: a seeker's first jobs, a posting's candidates."""
    from core.matching import MatchConfig
    from core.seekers import seeker_text
    from core.synth.seekers import generate_interactions, generate_seekers
    from workers.matching.service import MatchService

    t0 = time.perf_counter()
    seekers = generate_seekers(300, 1, postings=postings, ref_date=ref)
    inter = generate_interactions(seekers, postings, 1, days=3, ref_date=ref)
    vecs = encoder.encode([seeker_text(r) for r in seekers.iter_rows(named=True)])
    from encoding.cache import encode_postings

    service = MatchService(postings, encode_postings(postings, encoder), seekers, vecs, encoder,
                           interactions=inter, config=MatchConfig(ref_date=ref))
    print(f"\nmatching: {seekers.height} generated job seekers "
          f"({time.perf_counter() - t0:.1f}s to generate, encode and index)", flush=True)
    for row in seekers.iter_rows(named=True):
        recs = service.recommend_jobs(seeker_id=row["seeker_id"], k=5)
        if len(recs) >= 3:
            break
    regions = ", ".join(r["sido"] + (" " + r["sigungu"] if r["sigungu"] else "")
                        for r in row["desired_regions"])
    wants = ", ".join(occupation_label(c) for c in row["desired_occupations"])
    print(f"\n  seeker {row['seeker_id']}: wants {wants} in {regions}; education "
          f"{_education(row['education_level'])}, {row['career_years']} years")
    for i, m in enumerate(recs, start=1):
        p = service.postings[m.item_id]
        print(f"    {i}. {p['title']} — {p['company']} ({p['region']}), "
              f"{occupation_label(p.get('occupation_code'))}, score {m.score:.3f}")
        print(f"       추천기준: {m.reason_text}")
    pid = recs[0].item_id if recs else postings["posting_id"][0]
    cands = service.recommend_candidates(pid, k=5)
    print(f"\n  candidates for {service.postings[pid]['title']} ({pid}):")
    for i, m in enumerate(cands, start=1):
        prof = service.seeker_index.profile(m.item_id)
        wants = ", ".join(occupation_label(c) for c in prof["desired_occupations"])
        print(f"    {i}. {prof['seeker_id']} wants {wants}, education "
              f"{_education(prof['education_level'])}, {prof['career_years']} years — {m.reason_text}")


def _show_courses(channel, posting_id: str, k: int) -> list[str]:
    """The posting page's second box: training courses near the workplace (or online)."""
    from server.generated.jobrec.v1 import courses_pb2 as cpb
    from server.generated.jobrec.v1 import courses_pb2_grpc as cpb_grpc

    resp = cpb_grpc.CourseServiceStub(channel).CoursesForPosting(
        cpb.CoursesForPostingRequest(posting_id=posting_id, k=k), timeout=10
    )
    gap = f" (certificates asked: {', '.join(resp.skill_gap)})" if resp.skill_gap else ""
    out = [f"     training courses for this job{gap}:"]
    for c in resp.courses:
        out.append(f"    {c.rank}. {c.title} — {c.institution}  score {c.score:.3f}")
        out.append("       " + "; ".join(c.reasons))
    return out
