"""Tooling: the local runtime, emulators, gateway, benchmarks, the `finfaas` command, fakes and test support.

Installed in the dev virtualenv only; nothing under shared/finfaas may import it (a test checks).
"""
