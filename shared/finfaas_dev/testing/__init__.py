"""Test support for the runtime (handler events, tokens, clocks, the reference ledger); never shipped."""
