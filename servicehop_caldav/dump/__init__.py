"""An instance's data out and back in: logical export and import, online backup.

- :mod:`.format`: the export's layout on disk, its version, the iCalendar
  stream files (one stored object after the other, verbatim) and the JSON
  files beside them;
- :mod:`.export`: writes an export from one read snapshot of an instance;
- :mod:`.restore`: makes a new instance from an export in one write
  transaction (all or nothing);
- :mod:`.backup`: a consistent copy of a live SQLite database (the backup
  API) and the check that a database to verify exists.
"""
