"""Chairside: a media cloud for dental clinics."""

__version__ = "0.1.0"
