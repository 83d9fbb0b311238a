"""Typed records that cross Ray actors and files: host specs, cloud facts, run results.

A leaf package (it imports only pydantic): the runner writes these
records, node agents, the cloud controller and the report read them by attribute.
"""
