"""The attack zoo: threat models, attacks that return per-sample records, suites."""
