"""Ranker versions on disk, the promotion gate and the hot swap of the serving ranker.

A ranker directory ``R`` holds ``versions/<name>/`` (one :meth:`core.ranker.Ranker.save`
each) and ``CURRENT`` (the name of the version that serves). ``jobrec train-ranker --out R``
writes a new version and makes it current only when its validation hit@120 is not below
the current version's measured on the same validation seekers; otherwise the version stays
aside and the reason is recorded (``decision.json`` in it). ``CURRENT`` is replaced
atomically (write, fsync, rename), so a reader sees the old or the new name, never half.

:class:`RankerSlot` is what a frontend holds: it re-reads ``CURRENT`` at most every
``check_s`` seconds and swaps the loaded ranker in one reference assignment, so requests in
flight finish on the version they started with and no request waits for a load.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from pathlib import Path

from core.errors import InvalidInputError
from core.ranker import Ranker

log = logging.getLogger("jobrec.ranker")
CURRENT = "CURRENT"
GATE_METRIC = "hit@120"


def version_name(ranker: Ranker, now: dt.datetime | None = None) -> str:
    """``YYYYmmddTHHMMSSZ-<data fingerprint>``: sortable by time, names its data."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{ranker.manifest.get('fingerprint', 'nofp')}"


def current_version(root: Path) -> str | None:
    """The name in ``root/CURRENT`` (None: no version serves yet)."""
    try:
        name = (Path(root) / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def load_ranker(path: Path) -> Ranker:
    """A ranker from a version directory, or the current version of a ranker directory."""
    path = Path(path)
    name = current_version(path)
    if name is not None:
        return Ranker.load(path / "versions" / name)
    if (path / "versions").is_dir():
        raise InvalidInputError(f"{path}: no current ranker version (every version was kept "
                                "aside by the promotion gate; see versions/*/decision.json)",
                                field="ranker")
    return Ranker.load(path)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def publish(root: Path, ranker: Ranker, incumbent_metrics: dict | None,
            now: dt.datetime | None = None) -> dict:
    """Save ``ranker`` as a new version under ``root`` and promote it unless its validation
    :data:`GATE_METRIC` is below the incumbent's on the same validation seekers
    (``incumbent_metrics``: :func:`core.ranker.valid_metrics` of the current version; None:
    there is none, or it cannot score this feature version). Returns the decision."""
    root = Path(root)
    name = version_name(ranker, now)
    out = ranker.save(root / "versions" / name)
    new = ranker.manifest.get("metrics", {}).get("ranker", {}).get(GATE_METRIC)
    old = None if incumbent_metrics is None else incumbent_metrics.get(GATE_METRIC)
    previous = current_version(root)
    if new is None:
        promoted, why = False, f"no validation {GATE_METRIC} in the new version's metrics"
    elif old is None:
        promoted, why = True, ("first version" if previous is None else
                               f"the current version {previous} cannot be scored here")
    elif new >= old:
        promoted, why = True, f"validation {GATE_METRIC} {new} >= current {old}"
    else:
        promoted, why = False, (f"validation {GATE_METRIC} {new} < current {old} "
                                f"({previous}): kept aside")
    decision = {"version": name, "promoted": promoted, "reason": why, "previous": previous,
                "metric": GATE_METRIC, "new": new, "current": old}
    (out / "decision.json").write_text(json.dumps(decision, ensure_ascii=False, indent=1))
    if promoted:
        _write_atomic(root / CURRENT, name + "\n")
    return decision


def _awaiting_first_version(root: Path) -> bool:
    """A ranker directory that no training has written to yet (missing or empty)."""
    return not root.exists() or (root.is_dir() and not any(root.iterdir()))


class RankerSlot:
    """The serving ranker of a ranker directory, swapped to a newly promoted version without
    a restart (:meth:`current` checks ``CURRENT`` at most every ``check_s`` seconds)."""

    def __init__(self, root: Path, check_s: float = 5.0) -> None:
        self.root = Path(root)
        self.check_s = check_s
        self._lock = threading.Lock()
        self._ranker: Ranker | None = None
        self._name = current_version(self.root)
        if _awaiting_first_version(self.root):
            # a new deployment: the frontends start before the first daily training
            log.warning("ranker directory %s has no version yet: the formula orders jobs until "
                        "jobrec train-ranker promotes one", self.root)
        else:
            self._ranker = load_ranker(self.root)
        self._checked = time.monotonic()

    @property
    def version(self) -> str | None:
        """The version serving now (None: a plain ranker directory)."""
        return self._name

    def current(self) -> Ranker | None:
        """The ranker to use for this request (None: none promoted yet, the formula orders)."""
        if time.monotonic() - self._checked >= self.check_s:
            self.refresh()
        return self._ranker

    def refresh(self) -> bool:
        """Load the current version if it changed; True when it swapped. A version that
        fails to load is logged and the serving one kept."""
        if not self._lock.acquire(blocking=False):
            return False  # another request is loading it; this one serves the old version
        try:
            self._checked = time.monotonic()
            name = current_version(self.root)
            if name is None or name == self._name:
                return False
            try:
                ranker = Ranker.load(self.root / "versions" / name)
            except (InvalidInputError, OSError) as exc:
                log.warning("ranker version %s not loaded, %s keeps serving: %s", name,
                            self._name, exc)
                return False
            self._ranker, self._name = ranker, name
            log.info("ranker version %s serves now", name)
            return True
        finally:
            self._lock.release()
