"""The PostgreSQL v3 wire protocol in front of sqlvec sessions."""

import sqlvec

# The server's processes (the primary, the fork server and its workers all import this
# package before the engine) never hand pandas objects to pyarrow: keep pyarrow from loading
# pandas in them (30 MB each).
sqlvec.keep_pandas_unloaded()
