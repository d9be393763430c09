"""Offline stand-in for data.gouv.fr: an in-memory portal world served over local HTTP."""
