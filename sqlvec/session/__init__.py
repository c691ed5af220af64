"""Sessions: one per connection, the engine facade the wire talks to.

    core.py          the Session class: settings, execute / prepare / run, lifecycle, the
                     handler table of statement kinds (RUNNERS)
    results.py       PreparedStatement, StatementKind, Result, ResultColumn
    prepare.py       parse and plan one statement; plan_cache.py keeps the plans
    queries.py       SELECT and EXPLAIN;  writes.py  INSERT / UPDATE / DELETE
    ddl.py           CREATE / DROP / ALTER / TRUNCATE / COMMENT
    utility.py       utility statements, one handler table keyed by UtilityKind
    transactions.py  BEGIN / COMMIT / ROLLBACK, savepoints, transactional DDL;  cursors.py
                     DECLARE / FETCH / CLOSE
    ddl_lock.py      the database-wide lock a transaction's schema changes hold, per
                     table the open blocks using it, which schema changes wait for, and
                     the claims of autocommit changes that statements on the tables queue
                     behind
    copy.py          COPY's engine side (the wire moves the data)

Everything the wire uses is importable from here.
"""

from sqlvec.errors import Notice, QueryCanceled
from sqlvec.session.core import Session
from sqlvec.session.plan_cache import PlanCache
from sqlvec.session.results import PreparedStatement, Result, ResultColumn, StatementKind
from sqlvec.sql.copy import CopyCommand, CopyOptions

__all__ = ["Session", "Result", "ResultColumn", "PreparedStatement", "StatementKind",
           "PlanCache", "Notice", "QueryCanceled", "CopyCommand", "CopyOptions"]
