"""The auth capability: customers sign up and in, with rotating refresh tokens."""
