"""The streamed, resumable batch (``jobrec match --stream``): its dataset equals the in-memory
``run_match`` table; every active seeker is in it exactly once after a chunk worker dies
(Ray re-runs the task) and after the driver is SIGKILLed and the command run again; the
same parts on one node and on a cluster of two raylets; other inputs are refused."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from core.errors import InvalidInputError
from core.matching import MatchConfig
from core.synth import generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from workers.jobs.match import run_match
from workers.jobs.match_stream import MatchDataset, StreamConfig, run_match_stream

REF = dt.date(2026, 11, 20)
ROOT = Path(__file__).resolve().parents[1]
KEY = ["seeker_id", "rank"]


def make_world(n_postings: int = 1500, n_seekers: int = 230, seed: int = 21):
    postings = generate_postings(n_postings, seed, ref_date=REF)
    seekers = generate_seekers(n_seekers, seed, postings=postings, ref_date=REF)
    inter = generate_interactions(seekers, postings, seed, days=2, ref_date=REF)
    rng = np.random.default_rng(seed)
    pv = rng.standard_normal((postings.height, 16)).astype(np.float32)
    pv /= np.linalg.norm(pv, axis=1, keepdims=True)
    sv = rng.standard_normal((seekers.height, 16)).astype(np.float32)
    sv /= np.linalg.norm(sv, axis=1, keepdims=True)
    return postings, seekers, inter, pv, sv


@pytest.fixture(scope="module")
def world():
    postings, seekers, inter, pv, sv = make_world()
    cfg = MatchConfig(k=25, ref_date=REF)
    want, _ = run_match(seekers, postings, sv, pv, cfg, num_shards=3, interactions=inter,
                        use_ray=False, progress=False)
    return postings, seekers, inter, pv, sv, cfg, want.sort(KEY)


def active_ids(seekers: pl.DataFrame) -> list[str]:
    return seekers.filter(pl.col("active"))["seeker_id"].to_list()


def test_stream_config_is_validated():
    for bad in ({"chunk_seekers": 0}, {"in_flight": 0}, {"max_retries": -1},
                {"chunk_seekers": 2.5}):
        with pytest.raises(ValueError):
            StreamConfig(**bad)


def test_stream_equals_the_table_resumes_and_refuses_other_inputs(world, tmp_path):
    postings, seekers, inter, pv, sv, cfg, want = world
    out = str(tmp_path / "day")
    stream = StreamConfig(chunk_seekers=40)
    rep = run_match_stream(seekers, postings, sv, pv, cfg, out, num_shards=2, interactions=inter,
                           use_ray=False, stream=stream)
    ds = MatchDataset(out)
    assert rep.chunks == len(ds.parts()) >= 5 and rep.skipped == 0
    got = ds.read().sort(KEY)
    assert got.equals(want)  # two shards here, three for the table: the merge is exact
    check = ds.verify(active_ids(seekers))
    assert check["exactly_once"], check
    assert check["rows"] == want.height
    # a chunk lost (its sidecar gone): the next run writes that one again, nothing else
    os.remove(Path(out) / "part-00002.json")
    before = {p: os.stat(p).st_mtime_ns for p in ds.parts()}
    rep2 = run_match_stream(seekers, postings, sv, pv, cfg, out, num_shards=2,
                            interactions=inter, use_ray=False, stream=stream)
    assert rep2.skipped == rep.chunks - 1
    after = {p: os.stat(p).st_mtime_ns for p in ds.parts()}
    assert [p for p in before if before[p] != after[p]] == [str(Path(out) / "part-00002.parquet")]
    assert ds.read().sort(KEY).equals(want)
    # other settings, another chunking or another log: refused, nothing written
    for kw in ({"cfg": MatchConfig(k=10, ref_date=REF)},
               {"stream": StreamConfig(chunk_seekers=50)}, {"interactions": None}):
        args = {"cfg": cfg, "stream": stream, "interactions": inter, **kw}
        with pytest.raises(InvalidInputError, match="other inputs or settings"):
            run_match_stream(seekers, postings, sv, pv, args["cfg"], out, num_shards=2,
                             interactions=args["interactions"], use_ray=False,
                             stream=args["stream"])
    assert ds.read().sort(KEY).equals(want)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        run_match_stream(seekers, postings, sv, pv, cfg, str(tmp_path / "busy"),
                         use_ray=False, stream=stream)


def test_verify_catches_a_duplicated_and_a_missing_seeker(world, tmp_path):
    postings, seekers, inter, pv, sv, cfg, want = world
    out = tmp_path / "day"
    run_match_stream(seekers, postings, sv, pv, cfg, str(out), num_shards=2, interactions=inter,
                     use_ray=False, stream=StreamConfig(chunk_seekers=60))
    ds = MatchDataset(str(out))
    p0, p1 = out / "part-00000.parquet", out / "part-00001.parquet"
    a, b = pl.read_parquet(p0), pl.read_parquet(p1)
    one = a["seeker_id"][0]
    pl.concat([b, a.filter(pl.col("seeker_id") == one)]).write_parquet(p1)  # in two parts
    check = ds.verify(active_ids(seekers))
    assert not check["exactly_once"]
    assert check["seekers_in_several_parts"] == 1 and check["seekers_in_the_wrong_part"] == 1
    b.write_parquet(p1)
    a.filter(pl.col("seeker_id") != one).write_parquet(p0)  # gone
    check = ds.verify(active_ids(seekers))
    assert not check["exactly_once"]
    assert check["seekers_with_rows"] + check["seekers_without_match"] == len(active_ids(seekers)) - 1


def test_a_chunk_worker_killed_after_writing_is_rerun_exactly_once(world, tmp_path, ray_local):
    postings, seekers, inter, pv, sv, cfg, want = world
    out = tmp_path / "day"
    marker = tmp_path / "die-once"
    marker.write_text("")
    from workers.matching.actors import FAULT_ENV

    os.environ[FAULT_ENV] = str(marker)
    try:
        rep = run_match_stream(seekers, postings, sv, pv, cfg, str(out), num_shards=2,
                               interactions=inter, use_ray=True,
                               stream=StreamConfig(chunk_seekers=50, in_flight=2))
    finally:
        del os.environ[FAULT_ENV]
    assert not marker.exists()  # one worker died (after its part was written)
    ds = MatchDataset(str(out))
    assert rep.skipped == 0
    assert ds.verify(active_ids(seekers))["exactly_once"]
    assert ds.read().sort(KEY).equals(want)


def _write_inputs(d: Path, n_postings: int, n_seekers: int) -> None:
    postings, seekers, inter, pv, sv = make_world(n_postings, n_seekers, seed=5)
    postings.write_parquet(d / "postings.parquet")
    seekers.write_parquet(d / "seekers.parquet")
    inter.write_parquet(d / "interactions.parquet")
    np.save(d / "pv.npy", pv)
    np.save(d / "sv.npy", sv)


_RUN = """
import sys, time
import numpy as np, polars as pl
from pathlib import Path
from core.matching import MatchConfig
from workers.actors import init_ray
from workers.jobs.match_stream import StreamConfig, run_match_stream
d = Path(sys.argv[1])
postings, seekers = pl.read_parquet(d / "postings.parquet"), pl.read_parquet(d / "seekers.parquet")
inter = pl.read_parquet(d / "interactions.parquet")
cfg = MatchConfig(k=20, ref_date=__import__("datetime").date(2026, 11, 20))
if sys.argv[3] == "cluster":
    import ray
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
else:
    init_ray(num_cpus=2)
rep = run_match_stream(seekers, postings, np.load(d / "sv.npy"), np.load(d / "pv.npy"), cfg,
                       sys.argv[2], num_shards=2, interactions=inter, use_ray=True,
                       stream=StreamConfig(chunk_seekers=int(sys.argv[4]), in_flight=1))
print("DONE", rep.chunks, rep.skipped, flush=True)
"""


def test_driver_sigkilled_mid_run_resumes_and_a_cluster_writes_the_same_parts(tmp_path):
    """A subprocess driver is SIGKILLed once a part is written; the same command again
    completes the dataset; a run on a cluster of two raylets writes the same rows."""
    _write_inputs(tmp_path, 2500, 900)
    out = tmp_path / "day"
    script = textwrap.dedent(_RUN)
    cmd = [sys.executable, "-c", script, str(tmp_path), str(out)]
    proc = subprocess.Popen([*cmd, "local", "60"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and \
            not list(out.glob("part-*.json")):
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
    proc.wait(30)
    first = len(list(out.glob("part-*.json")))
    assert first >= 1
    ds = MatchDataset(str(out))
    seekers = pl.read_parquet(tmp_path / "seekers.parquet")
    assert not ds.verify(active_ids(seekers))["exactly_once"]  # not done yet
    again = subprocess.run([*cmd, "local", "60"], cwd=ROOT, capture_output=True, text=True,
                           timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    chunks, skipped = map(int, again.stdout.split("DONE")[1].split())
    assert skipped >= first and skipped < chunks
    check = ds.verify(active_ids(seekers))
    assert check["exactly_once"], check
    resumed = ds.read().sort(KEY)
    whole = tmp_path / "cluster"
    on_cluster = subprocess.run([*cmd[:-1], str(whole), "cluster", "60"], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
    assert on_cluster.returncode == 0, on_cluster.stderr[-3000:]
    assert MatchDataset(str(whole)).read().sort(KEY).equals(resumed)
    for c in range(chunks):
        name = f"part-{c:05d}.parquet"
        assert pl.read_parquet(whole / name).equals(pl.read_parquet(out / name))
