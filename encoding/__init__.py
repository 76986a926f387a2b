"""Inference side of the posting vectors, shared by ``workers``, ``server`` and ``training``.

``encoding.text.posting_text`` (what the model reads), ``encoding.encoder.Encoder`` (W-BERT),
``encoding.cache`` (SQLite embedding cache), ``encoding.vectors`` (vector files, chunked
encoding). Nothing here imports ``training``.
"""
