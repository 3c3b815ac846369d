"""Deduplication building blocks, all numpy/pyarrow, no Ray at import time.

- :mod:`.hashing`: bit mixers, exact-dedup text normalisation and hashes, scoping keys by prompt.
- :mod:`.shingles`: word / character shingle hashes for a whole batch of documents at once.
- :mod:`.minhash`: datasketch-compatible MinHash signatures (``affine32`` scheme) and LSH parameters.
- :mod:`.components`: LSH band keys, candidate groups, union-find components, representative choice.
- :mod:`.side_table`: the Parquet side table of committed signatures used for cross-snapshot dedup.
- :mod:`.ngrams`: the n-gram index used for decontamination against eval sets.

The Ray stages that compose them are :mod:`factory.stages.dedup` and :mod:`factory.stages.decontam`.
"""
