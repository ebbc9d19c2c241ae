"""Payments: merchants and (to come) payment intents, captures and refunds on the ledger."""
