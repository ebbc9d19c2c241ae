"""The customers capability: customer records, the sealed personal profile, callers and auditing."""
