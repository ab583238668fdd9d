"""Estimated time of arrival: a model trained offline, evaluated as a pure function."""
