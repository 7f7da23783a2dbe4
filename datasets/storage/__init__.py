"""Storage and loading: the `.beton` cache (`beton.py`) and FFCV loaders over it (`loaders.py`)."""
