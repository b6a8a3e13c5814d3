"""servicehop-caldav: a booking-by-calendar CalDAV server built on Radicale."""

__version__ = "0.1.0"
