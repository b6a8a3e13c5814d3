"""vobject's hot functions replaced (servicehop_caldav.vobject_fast): each
replacement gives what vobject's own gives, on generated input and quirks
included; whole calendars parse and serialize to the same text, etag and
time range through Radicale's PUT preparation; install() acts only on the
vobject release they were written for; and the server runs on them, storing
what vobject's own functions would have stored."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import vobject.base
import vobject.icalendar
import vobject.vcard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from radicale import item as radicale_item
from radicale.app.put import prepare

from servicehop_caldav import vobject_fast
from tests.conftest import start_server

# Characters that steer the functions: escapes, separators, CR/LF, and
# text of 1 to 4 UTF-8 octets (and a lone surrogate, which cannot be encoded).
TRICKY = "\\,;:nN\"eof \r\n\tabcäß€\U0001f600"
texts = st.text(alphabet=st.sampled_from(TRICKY) | st.characters(), max_size=200)
texts_no_surrogates = st.text(
    alphabet=st.sampled_from(TRICKY) | st.characters(blacklist_categories=("Cs",)), max_size=200)


def outcome(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """What a call gives: its value, or the type and text of what it raised."""
    try:
        return "value", function(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - compared as they are
        return "raised", (type(e), str(e))


@contextlib.contextmanager
def vobjects(own: bool) -> Iterator[None]:
    """vobject's own functions (``own``) or ours for the block; afterwards
    whichever were in place before (a server of another test may have put
    ours there)."""
    installed = vobject.base.foldOneLine is vobject_fast.fold_one_line
    if own:
        vobject_fast.uninstall()
    else:
        assert vobject_fast.install()
    try:
        yield
    finally:
        if installed:
            vobject_fast.install()
        else:
            vobject_fast.uninstall()


@pytest.fixture
def originals() -> Iterator[None]:
    with vobjects(own=True):
        yield


# -- each function against its original --------------------------------------------


@settings(max_examples=3000, deadline=None)
@given(s=texts, separator=st.sampled_from([",", ";", ":", None, "ab", "", "\\", 7]),
       escapable=st.sampled_from([None, ";", "\\;,Nn\"", "eofx", ["n", ";"]]))
def test_text_values_as_vobjects(s: str, separator: Any, escapable: Any) -> None:
    assert outcome(vobject_fast.string_to_text_values, s, separator, escapable) == outcome(
        vobject_fast.ORIGINAL_TEXT_VALUES, s, separator, escapable)


def test_text_values_quirks_kept() -> None:
    for s, expected in [
        ("", [""]), (",", [""]), ("a,,", ["a", ""]), ("a,b,", ["a", "b"]),
        ("a\\,b", ["a,b"]), ("x\\N\\n", ["x\n\n"]), ("a\\qb", ["a\\qb"]),
        ("end\\", ["end\\eof"]), ("\\", ["\\eof"]), ("a,\\", ["a", "\\eof"]),
    ]:
        assert vobject_fast.string_to_text_values(s) == expected, s
        assert vobject_fast.ORIGINAL_TEXT_VALUES(s) == expected, s


@settings(max_examples=3000, deadline=None)
@given(line=texts, length=st.sampled_from([75, 74, 76, 10, 3, 2, 1, 0, -1, 10.0]))
def test_folding_as_vobjects(line: str, length: int) -> None:
    ours, theirs = io.StringIO(), io.StringIO()
    assert outcome(vobject_fast.fold_one_line, ours, line, length) == outcome(
        vobject_fast.ORIGINAL_FOLD, theirs, line, length)
    assert ours.getvalue() == theirs.getvalue()


def test_folding_cuts_at_octets_not_characters() -> None:
    for line in ["A" * 200, "ä" * 100, "€" * 80, "\U0001f600" * 40, "x" + "ä" * 74, "a" * 74]:
        ours, theirs = io.StringIO(), io.StringIO()
        vobject_fast.fold_one_line(ours, line)
        vobject_fast.ORIGINAL_FOLD(theirs, line)
        assert ours.getvalue() == theirs.getvalue()
        if len(line) >= 75:
            assert all(len(part.encode()) <= 75 for part in ours.getvalue().split("\r\n"))
        assert ours.getvalue().replace("\r\n ", "") == line + "\r\n"


def test_folding_into_a_byte_buffer_is_vobjects() -> None:
    for line in ["short", "x" * 100]:
        ours, theirs = io.BytesIO(), io.BytesIO()
        assert outcome(vobject_fast.fold_one_line, ours, line) == outcome(
            vobject_fast.ORIGINAL_FOLD, theirs, line)
        assert ours.getvalue() == theirs.getvalue()


class _WithProperty(vobject.base.ContentLine):
    """A content line class with a property, whose setter must still run."""

    seen: list[Any]

    @property
    def shout(self) -> Any:
        return self.value.upper()

    @shout.setter
    def shout(self, value: Any) -> None:
        self.seen = [*getattr(self, "seen", []), value]

    @property
    def whisper(self) -> Any:  # no setter: vobject calls None (a TypeError)
        return self.value.lower()


def test_attribute_setting_as_vobjects() -> None:
    def states(setattr_: Callable[[Any, str, Any], None]) -> list[Any]:
        line = _WithProperty("SUMMARY", [], "x")
        plain = vobject.base.ContentLine("DTSTART", [["TZID", "Europe/Helsinki"]], "v")
        for target, name, value in [
            (line, "tzid_param", "Europe/Oslo"), (line, "x_a_paramlist", ["1", "2"]),
            (line, "value", "y"), (line, "shout", "loud"), (line, "shout", "again"),
            (plain, "value_param", "DATE"), (plain, "isNative", True), (plain, "encoded", True),
        ]:
            setattr_(target, name, value)
        return [line.params, line.value, line.seen, "shout" in vars(line),
                plain.params, plain.isNative, plain.encoded]

    assert states(vobject_fast.content_line_setattr) == states(vobject_fast.ORIGINAL_SETATTR)
    for setattr_ in (vobject_fast.content_line_setattr, vobject_fast.ORIGINAL_SETATTR):
        with pytest.raises(TypeError):
            setattr_(_WithProperty("SUMMARY", [], "x"), "whisper", "quiet")
    with pytest.raises(vobject.base.VObjectError):
        vobject_fast.content_line_setattr(vobject.base.ContentLine("X", [], ""), "a_paramlist", "no list")


# -- whole calendars through Radicale's PUT preparation ----------------------------------

CALENDARS = [
    # What a phone sends: a time zone, escapes, a list, a folded line, parameters.
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Apple Inc.//iOS 18//EN\r\n"
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Helsinki\r\nBEGIN:STANDARD\r\nDTSTART:19701025T040000\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0300\r\nTZOFFSETTO:+0200\r\n"
    "TZNAME:EET\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T030000\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0300\r\n"
    "TZNAME:EEST\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    "BEGIN:VEVENT\r\nUID:4F1C-äö-1\r\nDTSTAMP:20260101T000000Z\r\n"
    "DTSTART;TZID=Europe/Helsinki:20270302T090000\r\nDTEND;TZID=Europe/Helsinki:20270302T100000\r\n"
    "SUMMARY:Kotikäynti\\, siivous\\; ikkunat\r\nCATEGORIES:home,visit\\,care,Ä\r\n"
    "DESCRIPTION:Ensimmäinen rivi\\nToinen rivi\\, jossa pilkku ja kenoviiva \\\\ ja pitkä\r\n"
    "  teksti joka jatkuu seuraavalle riville ääkkösten kanssa €€€ \U0001f600\r\n"
    "LOCATION:Mannerheimintie 1\\, Helsinki\r\n"
    "ATTENDEE;CN=\"Virtanen, Aino\";ROLE=REQ-PARTICIPANT:mailto:aino@example.invalid\r\n"
    "RRULE:FREQ=WEEKLY;COUNT=4\r\nEXDATE;TZID=Europe/Helsinki:20270309T090000\r\n"
    "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Muistutus\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n",
    # An all-day event with a trailing backslash and an unknown escape.
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:allday\r\n"
    "DTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:20270302\r\nDTEND;VALUE=DATE:20270303\r\n"
    "SUMMARY:odd \\q escape\\\r\nDESCRIPTION:" + "x" * 300 + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
]


def prepared(text: str, href: str = "event.ics") -> tuple[str, str, Any]:
    """Radicale's PUT preparation of ``text``: the text it stores, its etag
    and its time range."""
    components = radicale_item.read_components(text)
    items, *_rest, problem = prepare(components, f"/alice/cal/{href}", "text/calendar", True, True,
                                     10_000_000, 1000, "VCALENDAR", False)
    if problem is not None:
        raise problem[1]  # what Radicale would refuse the PUT with (compared by type and text)
    item, = list(items)
    return item.serialize(), item.etag, item.time_range


@pytest.mark.parametrize("text", CALENDARS, ids=["phone", "odd"])
def test_calendars_prepared_as_with_vobjects_own(text: str) -> None:
    with vobjects(own=True):
        theirs = prepared(text)
    with vobjects(own=False):
        assert prepared(text) == theirs


def calendar_of(summary: str, description: str, categories: list[str]) -> str:
    def escaped(value: str) -> str:
        return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
                .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", ""))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "BEGIN:VEVENT", "UID:generated",
             "DTSTAMP:20260101T000000Z", "DTSTART:20270302T090000Z", "DTEND:20270302T100000Z",
             f"SUMMARY:{escaped(summary)}", f"DESCRIPTION:{escaped(description)}"]
    if categories:
        lines.append("CATEGORIES:" + ",".join(escaped(c) for c in categories))
    return "\r\n".join([*lines, "END:VEVENT", "END:VCALENDAR", ""])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(summary=texts_no_surrogates, description=texts_no_surrogates,
       categories=st.lists(texts_no_surrogates.filter(bool), max_size=3))
def test_generated_events_prepared_as_with_vobjects_own(
    summary: str, description: str, categories: list[str]
) -> None:
    text = calendar_of(summary, description, categories)
    with vobjects(own=True):
        theirs = outcome(prepared, text)
    with vobjects(own=False):
        assert outcome(prepared, text) == theirs


# -- installing ------------------------------------------------------------------------


def test_install_replaces_and_uninstall_restores(originals: None) -> None:
    assert vobject_fast.install() and vobject_fast.install()  # a second time changes nothing
    assert vobject.base.ContentLine.__setattr__ is vobject_fast.content_line_setattr
    assert vobject.icalendar.stringToTextValues is vobject_fast.string_to_text_values
    assert vobject.vcard.stringToTextValues is vobject_fast.string_to_text_values
    assert vobject.base.foldOneLine is vobject.icalendar.foldOneLine is vobject_fast.fold_one_line
    vobject_fast.uninstall()
    assert vobject.base.ContentLine.__setattr__ is vobject_fast.ORIGINAL_SETATTR
    assert vobject.icalendar.stringToTextValues is vobject_fast.ORIGINAL_TEXT_VALUES
    assert vobject.base.foldOneLine is vobject.icalendar.foldOneLine is vobject_fast.ORIGINAL_FOLD


def test_another_vobject_release_is_left_alone(originals: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vobject_fast.importlib.metadata, "version", lambda name: "1.0.0")
    assert vobject_fast.install() is False
    assert vobject.base.foldOneLine is vobject_fast.ORIGINAL_FOLD
    assert vobject.base.ContentLine.__setattr__ is vobject_fast.ORIGINAL_SETATTR


def test_a_function_someone_else_replaced_is_left_alone(
    originals: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def theirs(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("not called here")

    monkeypatch.setattr(vobject.base, "foldOneLine", theirs)
    assert vobject_fast.install()
    assert vobject.base.foldOneLine is theirs
    assert vobject.icalendar.stringToTextValues is vobject_fast.string_to_text_values


def test_the_server_runs_on_them_and_stores_what_vobject_would(
    originals: None, database_url: str, tmp_path: Path
) -> None:
    expected = [prepared(text)[0] for text in CALENDARS]  # vobject's own functions
    server = start_server(database_url, tmp_path)
    try:
        assert vobject.base.foldOneLine is vobject_fast.fold_one_line
        assert vobject.base.ContentLine.__setattr__ is vobject_fast.content_line_setattr
        session = server.session()
        assert session.request("MKCALENDAR", f"{server.url}/alice/cal/").status_code == 201
        for number, text in enumerate(CALENDARS):
            url = f"{server.url}/alice/cal/event-{number}.ics"
            answer = session.put(url, data=text.encode(), headers={"Content-Type": "text/calendar"})
            assert answer.status_code == 201, answer.text
            stored = session.get(url)
            assert stored.status_code == 200
            assert stored.text == expected[number]
    finally:
        server.stop()
