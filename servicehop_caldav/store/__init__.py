"""The SQL calendar store: collections, objects and their change log.

Plain functions over a SQLAlchemy Core connection, no Radicale types, so the
booking engine and the CLI can use them as well as the storage plugin.
"""
