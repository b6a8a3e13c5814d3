"""The booking engine: opening times, rules, staff assignment.

``model`` holds the plain values; ``opening`` turns an opening-time calendar
into windows; ``rules`` decides a request (pure: values in, decision out);
``config`` reads each department's rules from servicehop.toml.
"""
