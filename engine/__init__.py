"""ConvLens engine: pure PyTorch models and visualisation methods (no I/O)."""
