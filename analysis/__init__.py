"""Analysis of sweep results: metrics, ingest of Tune experiment dirs, trend fits, plots, report.

Kept light on purpose: importing ``analysis`` pulls in nothing heavy. Import the submodules
you need (``analysis.metrics``, ``analysis.ingest``, ``analysis.trends``, ``analysis.summary``,
``analysis.residuals``, ``analysis.plots``, ``analysis.report``; README.md lists them all).
Scores and effective robustness are fractions everywhere in code and files; only plots, the
HTML report and printed summaries show percent and percentage points.
"""
