"""Quality gates: Great Expectations suites run as Dagster asset checks on the raw and reporting assets."""
