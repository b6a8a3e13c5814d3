"""What the rights plugin reads of a login: one statement (roles and the
home's collections), or nothing of its own when the login read them."""

from __future__ import annotations

from pathlib import Path

import pytest
import radicale_rights_servicehop
from radicale_rights_servicehop import READ_WRITE, read_grants
from sqlalchemy import delete

from servicehop_caldav.db.engine import Database
from servicehop_caldav.db.schema import user_roles
from servicehop_caldav.directory import grants
from servicehop_caldav.directory import store as directory
from servicehop_caldav.instance import Instance
from tests.helpers.robust import ICS, event
from tests.helpers.served import serving_one_event
from tests.helpers.statements import recorded

CALENDAR = "demo/opening-demo"


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


def test_a_recalled_login_reads_its_grants_in_its_own_statement(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rights plugin's cache run out (as for a phone minutes after its
    last sync): a GET is still one statement, and the grants are of this
    very request: a role gone is refused at once, though the plugin's cache
    would still grant it."""
    with serving_one_event(tmp_path, database_url) as served:  # its PUT verified the password
        session, url = served.session, served.url
        db = Database.shared(database_url)
        monkeypatch.setattr(radicale_rights_servicehop, "CACHE_SECONDS", 0.0)
        seen = recorded(db.engine)
        got = session.get(url)  # recalled
        assert got.status_code == 200 and "SUMMARY:first" in got.text
        assert len(seen) == 1, seen  # the login, its grants, the calendar and the item
        monkeypatch.setattr(radicale_rights_servicehop, "CACHE_SECONDS", 3600.0)
        assert session.get(url).status_code == 200
        with db.transaction("w") as conn:
            conn.execute(delete(user_roles).where(user_roles.c.user_id == directory.user_id_of(conn, "demo")))
        refused = session.get(url)
        assert refused.status_code == 403, refused.text
        assert session.put(url, data=event("a", "second"), headers=ICS).status_code == 403
        # A wrong password is refused before anything is granted.
        assert session.get(url, auth=(served.created.user, "wrong")).status_code == 401


def test_grants_are_handed_over_within_one_request_only() -> None:
    mine = grants.Grants({"bookings-east": grants.READ_WRITE})
    grants.hand_over("rita", mine)  # no request: nothing is kept
    assert grants.from_login("rita") is None
    with grants.request():
        assert grants.from_login("rita") is None
        grants.hand_over("rita", mine)
        assert grants.from_login("rita") == mine
        assert grants.from_login("rolf") is None  # another login's rights are read as before
        grants.forget()  # a second login on the same request
        assert grants.from_login("rita") is None
        grants.hand_over("rita", mine)
        with grants.request():  # a request within (an application called from one)
            assert grants.from_login("rita") is None
        assert grants.from_login("rita") == mine
    assert grants.from_login("rita") is None
