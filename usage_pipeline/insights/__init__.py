"""Insights computed in Python: discussion themes, alerts and the weekly digest."""
