"""Persistence: tables, the database handle and migrations."""
