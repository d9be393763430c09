"""usage_pipeline: know and follow how an open-data producer's datasets are used."""

__version__ = "0.1.0"
