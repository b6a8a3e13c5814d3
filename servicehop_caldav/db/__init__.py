"""Database access: schema, engines and transactions, schema upgrades."""
