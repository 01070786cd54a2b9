"""Diagnostics in one module each: the probe that measures the model, the check that judges the measurement, and
its row of the check table, registered with `audit.checks.registry.register`. Every module here is picked up by
`audit.checks.registry.diagnostics()`; the built-in diagnostics still live in `audit/probes/` and `audit/checks/`."""
