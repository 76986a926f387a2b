"""``jobrec.v1.CourseService``: training courses for a posting or a job seeker.

The servicer only translates (``server.convert``'s course section), resolves a seeker's
regions, encodes inline text off the event loop and calls the course methods of the
backend (``acourses_for_posting``, ``acourses_for_item``, ``acourses_for_query``, each
the first two returning ``(recommendations, skill gap)``, the third the recommendations
of a :class:`core.course_rank.CourseQuery`; see ``workers.backend``). Seekers are given by
their profile fields (home, desired regions, desired KECO occupations, certificates held,
resume text) or by the id of a stored seeker when the server serves matching.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
from collections.abc import Callable
from typing import Any

import grpc

from core.course_rank import CourseRankConfig, resolve_anchors, seeker_query, stored_seeker_fields
from core.errors import InvalidInputError, NotFoundError
from encoding.text import posting_text
from server import convert
from server.deadline import within_deadline
from server.errors import rpc_method
from server.generated.jobrec.v1 import courses_pb2 as cpb
from server.generated.jobrec.v1 import courses_pb2_grpc as cpb_grpc

COURSE_SERVICE_NAME = cpb.DESCRIPTOR.services_by_name["CourseService"].full_name
_RULE_FIELDS = frozenset(cpb.CourseRuleOverrides.DESCRIPTOR.fields_by_name)


def _rules_field(exc: BaseException) -> BaseException:
    if isinstance(exc, InvalidInputError) and exc.field in _RULE_FIELDS:
        return InvalidInputError(str(exc), field=f"rules.{exc.field}")  # rules name fields bare
    return exc


_rpc = rpc_method(COURSE_SERVICE_NAME, _rules_field)


class CourseServicer(cpb_grpc.CourseServiceServicer):
    """``CourseService`` over a backend with course methods."""

    def __init__(self, backend: Any, encoder: Any, rules: Any, *, executor: concurrent.futures.Executor,
                 inline_row: Callable[[Any], dict] | None = None,
                 rank: CourseRankConfig | None = None,
                 seekers: Callable[[str], Any] | None = None) -> None:
        self.backend = backend
        self.encoder = encoder
        self.rules = rules  # core.course_rules.CourseRuleConfig
        self.executor = executor
        self.inline_row = inline_row
        self.rank = rank or CourseRankConfig()
        self.seekers = seekers  # seeker id -> stored row or None (the matching service's store)

    def _today(self) -> dt.date:
        return self.rules.ref_date or dt.date.today()

    async def _encode(self, texts: list[str]):
        if self.encoder is None:
            raise InvalidInputError("this server has no encoder: inline text is not supported",
                                    field="posting")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.encoder.encode, texts)

    @_rpc
    async def CoursesForPosting(self, request: cpb.CoursesForPostingRequest, context):
        k = convert.validate_course_k(request.k)
        rules = convert.course_rules_from_overrides(self.rules, request.rules,
                                                    has=request.HasField("rules"))
        held = [h.strip() for h in request.held_certificates if h.strip()]
        which = request.WhichOneof("query")
        if which == "posting_id":
            pid = request.posting_id.strip()
            if not pid:
                raise InvalidInputError("posting_id must not be empty", field="posting_id")
            aw = self.backend.acourses_for_posting(pid, k=k, rules=rules, held=held)
        elif which == "posting":
            if self.inline_row is None:
                raise InvalidInputError("inline postings are not supported here", field="posting")
            loop = asyncio.get_running_loop()
            row = await loop.run_in_executor(None, self.inline_row, request.posting)
            pid = row["posting_id"]

            async def inline():
                vec = await self._encode([posting_text(row)])
                return await self.backend.acourses_for_item(row, vec[0], k=k, rules=rules,
                                                            held=held)

            aw = inline()
        else:
            raise InvalidInputError("set either posting_id or posting", field="query")
        recs, gap = await within_deadline(context, aw)
        return convert.courses_response(recs, query_id=pid, gap=gap, rules=rules,
                                        today=self._today())

    @_rpc
    async def CoursesForSeeker(self, request: cpb.CoursesForSeekerRequest, context):
        k = convert.validate_course_k(request.k)
        rules = convert.course_rules_from_overrides(self.rules, request.rules,
                                                    has=request.HasField("rules"))
        which = request.WhichOneof("who")
        if which == "seeker_id":
            sid = request.seeker_id.strip()
            if not sid:
                raise InvalidInputError("seeker_id must not be empty", field="seeker_id")
            if self.seekers is None:
                raise InvalidInputError("this server holds no seekers: give the profile",
                                        field="seeker_id")
            row = self.seekers(sid)
            if row is None:
                raise NotFoundError(f"seeker {sid!r} is not known")
            f = stored_seeker_fields(row)
        elif which == "seeker":
            f = convert.seeker_profile_fields(request.seeker)
        else:
            raise InvalidInputError("give seeker (a profile) or seeker_id", field="seeker")
        if not f["desired_occupation_codes"]:
            raise InvalidInputError("give at least one desired occupation",
                                    field="seeker.desired_occupation_codes")
        anchors = resolve_anchors(f["lat"], f["lng"], f["sido"], f["home_region"],
                                  f["desired_regions"])
        vec = None
        if f["resume_text"] and self.encoder is not None:
            vec = (await self._encode([f["resume_text"]]))[0]
        q = seeker_query(anchors, f["desired_occupation_codes"], f["certificates"],
                         self.backend.certificate_demand, self.rank, vec)
        recs = await within_deadline(context, self.backend.acourses_for_query(q, k=k, rules=rules))
        return convert.courses_response(recs, query_id=request.seeker_id if which == "seeker_id" else "",
                                        gap=q.gap.values(), rules=rules,
                                        today=self._today())


def add_course_service(server: grpc.aio.Server, servicer: CourseServicer) -> str:
    """Register ``servicer`` on ``server``; returns the service name (health, reflection)."""
    cpb_grpc.add_CourseServiceServicer_to_server(servicer, server)
    return COURSE_SERVICE_NAME
