"""gra-local: Generator → Reviewer panel → Adjudicator data synthesis with small local models."""

import os

# numpy's BLAS (dedup embeddings, similarity matmuls) spin-waits on its threads: with the
# cores busy (llama.cpp workers, a shared laptop or CI) 7 sentences took 13 s instead of
# 0.9 s here. One thread is steady everywhere; set the variable yourself to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
