"""The ledger capability: double-entry accounts and transfers, and their HTTP face."""
