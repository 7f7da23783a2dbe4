"""Generated sources: procedural renderings (`synthnet`, `synthcam`, multi-domain) and FractalDB."""
