"""The directory: departments, people and their roles, in the same database.

Personal fields (name, e-mail, address, phone) are encrypted with the
instance keyring; usernames, roles and entitlements stay in clear because
rights and booking rules are decided on them.
"""
