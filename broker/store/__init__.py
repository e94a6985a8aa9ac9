"""Where state lives on disk: the credential and audit database, signing keys, private files.

What belongs here: the SQLite store (schema and migrations, credentials, audit records, counted
refusals; the only module that speaks SQL, and the only code that opens the database files), the
signing-key lifecycle on disk (next, active, retiring) and crash-safe 0600 file writes. It knows
nothing of HTTP or of who is calling.
"""
