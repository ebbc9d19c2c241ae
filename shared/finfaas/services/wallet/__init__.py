"""Wallet top-ups and withdrawals through the rail, each an orchestrated saga."""
