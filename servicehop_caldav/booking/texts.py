"""What the recipient reads in their own calendar app, in nb and en.

Pure functions of plain values: a decision becomes a SUMMARY prefix and
DESCRIPTION lines. Times are shown in the department's time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from servicehop_caldav.booking.model import Interval, Reason

LANGUAGES = ("nb", "en")

REASONS: dict[str, dict[Reason, str]] = {
    "nb": {
        Reason.TOO_SOON: "Besøket må bestilles minst {notice} før det starter.",
        Reason.BEYOND_HORIZON: "Besøk kan bestilles høyst {horizon} dager fram i tid.",
        Reason.IN_THE_PAST: "Tidspunktet har allerede vært.",
        Reason.TOO_SHORT: "Et besøk må vare minst {min_duration}.",
        Reason.TOO_LONG: "Et besøk kan vare høyst {max_duration}.",
        Reason.OUTSIDE_OPENING: "Tidspunktet er utenfor åpningstiden.",
        Reason.OWN_OVERLAP: "Du har allerede et besøk på dette tidspunktet.",
        Reason.ENTITLEMENT: "Bestillingen går over ditt vedtak på {weekly} per uke.",
        Reason.NO_STAFF_FREE: "Ingen ansatte er ledige på dette tidspunktet.",
        Reason.ALL_DAY: "Et besøk må ha et klokkeslett, ikke være en heldagshendelse.",
        Reason.RECURRING: "Gjentakende besøk kan ikke bestilles; bestill hvert besøk for seg.",
        Reason.NO_TIME: "Besøket mangler starttidspunkt.",
        Reason.UNKNOWN_SERVICE: "Avdelingen har ingen tjeneste med dette navnet.",
        Reason.BAD_TIME: "Start- eller sluttidspunktet kan ikke leses.",
        Reason.END_BEFORE_START: "Besøket slutter før det starter.",
        Reason.ZERO_LENGTH: "Besøket slutter samtidig som det starter.",
        Reason.NOTES_TOO_LONG: "Beskrivelsen er for lang (høyst {max_notes} tegn).",
        Reason.UID_TAKEN: "Hendelsens UID tilhører en annen bestilling; lag en ny hendelse.",
    },
    "en": {
        Reason.TOO_SOON: "Visits must be booked at least {notice} before they start.",
        Reason.BEYOND_HORIZON: "Visits can be booked at most {horizon} days ahead.",
        Reason.IN_THE_PAST: "That time has already passed.",
        Reason.TOO_SHORT: "A visit must last at least {min_duration}.",
        Reason.TOO_LONG: "A visit can last at most {max_duration}.",
        Reason.OUTSIDE_OPENING: "That time is outside the opening hours.",
        Reason.OWN_OVERLAP: "You already have a visit at that time.",
        Reason.ENTITLEMENT: "This booking would exceed your entitlement of {weekly} per week.",
        Reason.NO_STAFF_FREE: "No member of staff is free at that time.",
        Reason.ALL_DAY: "A visit needs a time of day; all-day events cannot be booked.",
        Reason.RECURRING: "Recurring visits cannot be booked; book each visit on its own.",
        Reason.NO_TIME: "The visit has no start time.",
        Reason.UNKNOWN_SERVICE: "The department offers no service of that name.",
        Reason.BAD_TIME: "The visit's start or end cannot be read.",
        Reason.END_BEFORE_START: "The visit ends before it starts.",
        Reason.ZERO_LENGTH: "The visit ends when it starts.",
        Reason.NOTES_TOO_LONG: "The description is too long (at most {max_notes} characters).",
        Reason.UID_TAKEN: "This event's UID belongs to another booking; create a new event.",
    },
}

PHRASES: dict[str, dict[str, str]] = {
    "nb": {
        "not_booked": "IKKE BESTILT: ",
        "confirmed": "Bekreftet.",
        "confirmed_by": "Bekreftet: {staff} kommer.",
        "alternatives": "Ledige tider i nærheten:",
        "no_alternatives": "Ingen ledige tider i nærheten.",
        "change_refused": "Endringen ble ikke gjort; bestillingen står som før.",
        "hours": "{n} t",
        "minutes": "{n} min",
        "free": "Ledig",
        "busy": "Opptatt",
        "free_description": "Ledig tid: bestill i kalenderen for bestillinger.",
        "waiting": (
            "På venteliste: ingen ansatte er ledige på dette tidspunktet ennå. "
            "Blir en plass ledig minst {notice} før besøket, bekreftes det automatisk."
        ),
        "waiting_expired": "Ikke bestilt: ingen plass ble ledig i tide.",
        "flagged": (
            "Åpningstiden er endret, og ingen ansatte kan komme på dette tidspunktet. "
            "Avdelingen tar kontakt med deg om dette besøket."
        ),
        "flagged_prefix": "MÅ FØLGES OPP: ",
        "waiting_prefix": "VENTER: ",
        "flagged_category": "Må følges opp",
        "waiting_category": "Venter",
        "staff_label": "Ansatt",
        "recipient_label": "Mottaker",
    },
    "en": {
        "not_booked": "NOT BOOKED: ",
        "confirmed": "Confirmed.",
        "confirmed_by": "Confirmed: {staff} will come.",
        "alternatives": "Free times nearby:",
        "no_alternatives": "No free times nearby.",
        "change_refused": "The change was not made; the booking stands as before.",
        "hours": "{n} h",
        "minutes": "{n} min",
        "free": "Free",
        "busy": "Busy",
        "free_description": "Free time: book it in your bookings calendar.",
        "waiting": (
            "On the waiting list: no member of staff is free at this time yet. "
            "If a place becomes free at least {notice} before the visit, it is confirmed automatically."
        ),
        "waiting_expired": "Not booked: no place became free in time.",
        "flagged": (
            "The opening hours have changed and nobody on the staff can come at this time. "
            "The department will contact you about this visit."
        ),
        "flagged_prefix": "NEEDS ATTENTION: ",
        "waiting_prefix": "WAITING: ",
        "flagged_category": "Needs attention",
        "waiting_category": "Waiting",
        "staff_label": "Staff",
        "recipient_label": "Recipient",
    },
}

_WEEKDAYS = {
    "nb": ("man.", "tir.", "ons.", "tor.", "fre.", "lør.", "søn."),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}


def _language(language: str) -> str:
    return language if language in LANGUAGES else "nb"


def phrase(language: str, key: str, **values: object) -> str:
    """The phrase ``key`` in ``language`` (nb if unknown); ``values`` fills
    its placeholders (``waiting`` takes ``notice``, a formatted duration).
    Raises KeyError for an unknown key or a missing value."""
    return PHRASES[_language(language)][key].format(**values)


def duration_text(minutes: int, language: str) -> str:
    """90 -> "1 t 30 min" / "1 h 30 min"."""
    phrases = PHRASES[_language(language)]
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(phrases["hours"].format(n=hours))
    if rest or not hours:
        parts.append(phrases["minutes"].format(n=rest))
    return " ".join(parts)


def when_text(moment: datetime, timezone: ZoneInfo, language: str) -> str:
    local = moment.astimezone(timezone)
    weekday = _WEEKDAYS[_language(language)][local.weekday()]
    if _language(language) == "nb":
        return f"{weekday} {local.day}.{local.month}. kl. {local:%H:%M}"
    return f"{weekday} {local.day} {local:%b} {local:%H:%M}"


def interval_text(interval: Interval, timezone: ZoneInfo, language: str) -> str:
    end = interval.end.astimezone(timezone)
    return f"{when_text(interval.start, timezone, language)}–{end:%H:%M}"


def reason_text(reason: Reason, language: str, **values: object) -> str:
    """The sentence for ``reason``; ``values`` fills its placeholders
    (notice, horizon, min_duration, max_duration, weekly, max_notes)."""
    return REASONS[_language(language)][reason].format(**values)


def refusal_description(
    reasons: Sequence[str],
    alternatives: Sequence[Interval],
    timezone: ZoneInfo,
    language: str,
    changed: bool = False,
) -> str:
    """DESCRIPTION lines of a refused booking: why, and what is free nearby."""
    phrases = PHRASES[_language(language)]
    lines = [phrases["change_refused"]] if changed else []
    lines.extend(reasons)
    if alternatives:
        lines.append(phrases["alternatives"])
        lines.extend("- " + interval_text(a, timezone, language) for a in alternatives)
    else:
        lines.append(phrases["no_alternatives"])
    return "\n".join(lines)


def confirmation_line(language: str, staff_name: str | None) -> str:
    phrases = PHRASES[_language(language)]
    if staff_name:
        return phrases["confirmed_by"].format(staff=staff_name)
    return phrases["confirmed"]


def not_booked_prefix(language: str) -> str:
    return PHRASES[_language(language)]["not_booked"]
