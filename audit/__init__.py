"""The audit: plan, suite over the store, probes, checks, verdict, report and command line."""
