"""The shard store (local or ``s3://``), its generations, and the backend whose writes are
in the store before they are acknowledged."""
