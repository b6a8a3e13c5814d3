"""The booking desk: where the booking rules meet the store.

``settings`` keeps servicehop.toml current; ``department`` reads one
department as plain values for the rules; ``desk`` handles every write into
a recipient's bookings calendar inside the request's transaction.
"""
