"""pynamodb models bound to a table named at run time (the stage, a test's private table).

A store declares its items once with `Meta = StoreMeta` and binds them per physical table with
`bound(Item, table_name, region)`; the client limits below are the same for every such store.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pynamodb.models import Model

# A person or a saga step waits on these calls: fail fast and let the caller retry rather than hang.
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 5
RETRY_ATTEMPTS_MAX = 2
BOUND_MODELS_MAX = 64


class StoreMeta:
    table_name = "unbound"
    connect_timeout_seconds = CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds = READ_TIMEOUT_SECONDS
    max_retry_attempts = RETRY_ATTEMPTS_MAX


@lru_cache(maxsize=BOUND_MODELS_MAX)
def bound(base: type[Model], table_name: str, region: str | None = None) -> Any:
    """A subclass of base reading and writing table_name; one class per (base, table, region).
    Without a region, botocore's own resolution (AWS_REGION, AWS_DEFAULT_REGION) applies."""
    fields = {"table_name": table_name} if region is None else {"table_name": table_name, "region": region}
    meta = type("Meta", (base.Meta,), fields)
    return type(base.__name__.lstrip("_"), (base,), {"Meta": meta, "__module__": base.__module__})
