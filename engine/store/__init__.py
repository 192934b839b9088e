"""Persistence: tables, the repository that maps them to the domain, and migrations."""
