"""Shared code of the Lens trust feed pipelines."""
