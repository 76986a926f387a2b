"""The built-in collection kinds: importing this module registers them.

A new kind adds its module here (one import) so every shard process knows it.
"""

from __future__ import annotations

from workers.postings import POSTING_KIND, POSTINGS

__all__ = ["POSTINGS", "POSTING_KIND"]
