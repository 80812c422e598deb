"""The llama.cpp backend: a worker process per model (`worker`, driven by `process`), which
decodes several requests together on llama-cpp-python's low-level API (`decode`)."""
