"""Online matching: the job and seeker indexes, the matching service, its Ray wrappers,
the ranker versions and the interaction log."""
