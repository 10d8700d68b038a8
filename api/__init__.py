"""ConvLens HTTP API (FastAPI)."""
