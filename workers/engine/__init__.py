"""The retrieval engine's core: collections, columns, the H3 cell index, exact scoring
and batch top-k, sharding, persistence of a shard's collections (no Ray, no store)."""
