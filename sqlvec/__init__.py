"""sqlvec: a PostgreSQL-compatible SQL vector database."""
