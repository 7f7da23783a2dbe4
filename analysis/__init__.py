"""Analysis of sweep results: metrics, ingest of Tune experiment dirs, trend fits, plots, report.

Kept light on purpose: importing ``analysis`` pulls in nothing heavy. Import the submodules
you need (``analysis.metrics``, ``analysis.ingest``, ``analysis.trends``, ``analysis.plots``,
``analysis.report``). Scores and effective robustness are fractions everywhere in code and
files; only plots and printed summaries show percent.
"""
