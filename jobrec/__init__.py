"""jobrec: job-posting recommendations for Worknet/Work24 postings."""

__version__ = "0.1.0"
