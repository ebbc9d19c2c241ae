"""FinFaaS: serverless finance functions (accounts, ledger, transfers, wealth, loans)."""
