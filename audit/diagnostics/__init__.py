"""The measurements behind the findings (gradients, landscape, sanity, indicators of attack failure), as used by
the probes in `audit.probes`; the findings' shape is in `finding.py`, their budgets in `config.py`."""
