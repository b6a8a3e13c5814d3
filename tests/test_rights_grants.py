"""What the rights plugin reads of a login: one statement (roles and the home's collections)."""

from __future__ import annotations

from pathlib import Path

from radicale_rights_servicehop import READ_WRITE, read_grants

from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Instance
from tests.helpers.statements import recorded


def test_grants_of_a_user_are_read_in_one_statement(instance_home: Path) -> None:
    with Instance(instance_home).open() as (db, _keyring):
        seen = recorded(db.engine)
        grants = read_grants(db, "demo")  # init's admin of the demo department
        assert grants is not None and grants.collections.get("opening-demo") == READ_WRITE
        assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1
        assert read_grants(db, "nobody") is None
        with db.transaction("w") as conn:
            directory.set_disabled(conn, "demo", True)
        assert read_grants(db, "demo") is None
