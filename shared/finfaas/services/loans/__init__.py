"""Loans: the product catalogue and quotes of repayment schedules (the first slice of the business line)."""
