"""A throwaway PostgreSQL schema on a shared server.

The benchmark and the conformance run each need a fresh, empty PostgreSQL
database next to other users of the one server on the machine; a schema of
their own, named in the URL's ``search_path``, is that, and it is dropped
afterwards.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

from servicehop_caldav.db.engine import DatabaseError


@contextmanager
def scratch_schema(admin_url: str, prefix: str) -> Iterator[str]:
    """A database URL on a new schema of ``admin_url`` (named ``prefix`` and a
    random suffix), dropped with everything in it when the block ends. Stop
    whatever uses it first: an open transaction blocks DROP SCHEMA."""
    schema = prefix + uuid.uuid4().hex[:12]
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:
        engine.dispose()
        raise DatabaseError(f"PostgreSQL is not usable at {admin_url}: {e}") from e
    separator = "&" if "?" in admin_url else "?"
    try:
        yield f"{admin_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        except Exception as e:  # noqa: BLE001 - report, keep cleaning up
            print(f"warning: could not drop PostgreSQL schema {schema}: {e}", file=sys.stderr)
        engine.dispose()
