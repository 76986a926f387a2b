"""Batch jobs and their CLIs: the refresh, ``jobrec match``, ``jobrec train-ranker`` and the
old prototype kept for the benchmark."""
