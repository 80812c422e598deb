"""The GRA method: records, config, seeds, prompts, stages, scheduler, journal.

Nothing here imports Textual or llama.cpp: the engine talks to models through
`gra_local.core.backend.Backend`, implemented in `gra_local.backends`.
"""
