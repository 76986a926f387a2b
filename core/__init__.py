"""Posting schema, reference data, ingestion, normalisation and recommendation rules.

Nothing in ``core`` imports grpc, ray or torch: it is the plain data layer every other
package builds on.
"""
