"""gRPC ``jobrec.v1.MatchingService``: RecommendJobs, RecommendCandidates, RecordInteractions,
UpsertSeekers and DeleteSeekers.

A thin layer over :class:`workers.matching.service.MatchService` or
:class:`workers.matching.frontend.ShardedMatchService`: protobuf in and out through
:mod:`server.convert`, errors mapped by :mod:`server.errors`. ``RecommendCandidates`` needs
the caller's API key to carry the ``candidates`` scope (``KEY:candidates`` in the key
list); without it, or with authentication off, the call is PERMISSION_DENIED.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc

from core.errors import InvalidInputError, PermissionDeniedError
from core.matching import MATCH_MAX_K
from server import convert
from server.auth import caller_scopes
from server.errors import rpc_method
from server.generated.jobrec.v1 import matching_pb2 as mpb
from server.generated.jobrec.v1 import matching_pb2_grpc as mpb_grpc
from workers.matching.service import MAX_SEEKER_WRITES

SERVICE_NAME = "jobrec.v1.MatchingService"
CANDIDATES_SCOPE = "candidates"
MAX_RECORD_INTERACTIONS = 10_000  # per RecordInteractions call


_rpc = rpc_method(SERVICE_NAME)


def _k(k: int) -> int | None:
    if k < 0 or k > MATCH_MAX_K:
        raise InvalidInputError(f"k must be in 0..{MATCH_MAX_K} (0 = default)", field="k")
    return k or None


class MatchingServicer(mpb_grpc.MatchingServiceServicer):
    """Serves a :class:`~workers.matching.service.MatchService` or a
    :class:`~workers.matching.frontend.ShardedMatchService` (calls run in a thread)."""

    def __init__(self, service, key_scopes: dict[str, frozenset[str]] | None = None) -> None:
        self.service = service
        self.key_scopes = key_scopes or {}

    @_rpc
    async def RecommendJobs(self, request: mpb.RecommendJobsRequest, context):
        which = request.WhichOneof("seeker")
        ref = None
        if request.HasField("ref_date"):
            try:
                ref = dt.date.fromisoformat(request.ref_date)
            except ValueError:
                raise InvalidInputError(f"{request.ref_date!r} is not an ISO date",
                                        field="ref_date") from None
        kw = {"k": _k(request.k), "sort": request.sort or "score", "ref_date": ref,
              "wage_hard": request.wage_hard}
        if which == "seeker_id":
            kw["seeker_id"] = request.seeker_id
        elif which == "profile":
            kw["profile"] = convert.profile_from_pb(request.profile)
        fast = getattr(self.service, "ajobs_with_rows", None)  # the shard frontend's
        got, rows = await fast(**kw) if fast is not None else \
            await asyncio.to_thread(lambda: self.service.jobs_with_rows(**kw))
        return mpb.RecommendJobsResponse(
            matches=[convert.job_match_to_pb(m, rows[m.item_id]) for m in got])

    @_rpc
    async def RecommendCandidates(self, request: mpb.RecommendCandidatesRequest, context):
        if CANDIDATES_SCOPE not in caller_scopes(context.invocation_metadata(), self.key_scopes):
            raise PermissionDeniedError(
                f"RecommendCandidates needs an API key with the {CANDIDATES_SCOPE!r} scope")
        if not request.posting_id:
            raise InvalidInputError("posting_id is required", field="posting_id")
        kw = {"k": _k(request.k), "sort": request.sort or "score"}
        fast = getattr(self.service, "acandidates_with_profiles", None)
        got, profiles = await fast(request.posting_id, **kw) if fast is not None else \
            await asyncio.to_thread(lambda: self.service.candidates_with_profiles(
                request.posting_id, **kw))
        return mpb.RecommendCandidatesResponse(
            candidates=[convert.candidate_to_pb(m, profiles[m.item_id]) for m in got])

    @_rpc
    async def RecordInteractions(self, request: mpb.RecordInteractionsRequest, context):
        if len(request.interactions) > MAX_RECORD_INTERACTIONS:
            raise InvalidInputError(f"at most {MAX_RECORD_INTERACTIONS} interactions per call",
                                    field="interactions")
        rows = convert.interactions_from_pb(request)
        # once the write starts it finishes even if the caller goes away: an entry logged
        # but not applied in memory would only show after a restart
        n = await asyncio.shield(asyncio.to_thread(self.service.record_interactions, rows))
        return mpb.RecordInteractionsResponse(recorded=n)


    @_rpc
    async def UpsertSeekers(self, request: mpb.UpsertSeekersRequest, context):
        profiles = [convert.profile_from_pb(p) for p in request.seekers]
        n = await asyncio.shield(asyncio.to_thread(self.service.upsert_seekers, profiles))
        return mpb.UpsertSeekersResponse(upserted=n)

    @_rpc
    async def DeleteSeekers(self, request: mpb.DeleteSeekersRequest, context):
        ids = list(request.seeker_ids)
        if len(ids) > MAX_SEEKER_WRITES:
            raise InvalidInputError(f"at most {MAX_SEEKER_WRITES} seeker ids per call",
                                    field="seeker_ids")
        n = await asyncio.shield(asyncio.to_thread(self.service.delete_seekers, ids))
        return mpb.DeleteSeekersResponse(deleted=n)


def add_to_server(servicer: MatchingServicer, server: grpc.aio.Server) -> None:
    """Register the matching service on ``server``."""
    mpb_grpc.add_MatchingServiceServicer_to_server(servicer, server)
