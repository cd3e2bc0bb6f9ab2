"""Alembic's migrations of the archive's schema, run by worker.archive.migrate (not imported as a package)."""
