"""The PostgreSQL v3 wire protocol in front of sqlvec sessions."""
