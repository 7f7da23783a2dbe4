"""Storage and loading: where things are stored (`location.py`: paths and `s3://`), atomic writes
(`atomic.py`), the `.beton` cache (`beton.py`) and FFCV loaders over it (`loaders.py`)."""
