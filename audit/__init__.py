"""The audit: runner, diagnostics, report and command line."""
