"""`nanocode serve`: an OpenAI-compatible server over the sampler (see server.py)."""
