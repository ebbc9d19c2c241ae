"""How the ledger spreads its outbox items over partitions: its writer and the relay both read it.

A module of its own so the relay (through the outbox store) reaches no ledger table's name.
"""

ledger_outbox_partitions = 8
