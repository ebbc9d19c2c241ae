"""The nightly store packs many loans' writes into one TransactWriteItems within DynamoDB's limits, a
loan's items never split between two transactions (store/loans_nightly_store.py)."""

from __future__ import annotations

from types import SimpleNamespace

from finfaas.store.loans_nightly_store import _chunks, transaction_bytes_max, transaction_items_max


def night(loan_id: str, items: int, doc_bytes: int = 10):
    write = SimpleNamespace(loan=SimpleNamespace(loan_id=loan_id))
    return write, [(SimpleNamespace(doc="x" * doc_bytes), None) for _ in range(items)]


def test_loans_fill_a_transaction_up_to_100_items_without_splitting_one():
    entries = [night(f"l{n}", 3) for n in range(70)]  # 210 items

    chunks = list(_chunks(entries))

    assert [sum(len(items) for _, items in chunk) for chunk in chunks] == [99, 99, 12]
    assert all(sum(len(items) for _, items in c) <= transaction_items_max for c in chunks)
    assert [write.loan.loan_id for chunk in chunks for write, _ in chunk] == [f"l{n}" for n in range(70)]


def test_large_loan_documents_start_a_new_transaction_before_the_size_limit():
    third = transaction_bytes_max // 3 + 1
    entries = [night(f"l{n}", 2, doc_bytes=third // 2 + 1) for n in range(5)]  # each loan just over a third

    chunks = list(_chunks(entries))

    assert [len(chunk) for chunk in chunks] == [2, 2, 1]
