"""The archive's migrations, one revision a file, in order; each written by hand to match schema.py."""
