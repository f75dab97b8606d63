"""Prefect flows: the care loop, dispatch, feedback collection, second round, and the demo."""
