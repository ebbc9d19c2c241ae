"""The business date: the day every date rule of the business lines reads, per market."""
