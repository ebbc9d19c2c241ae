"""Helpers shared by unit, integration and end-to-end tests: worlds, fakes, scenarios, harnesses."""
