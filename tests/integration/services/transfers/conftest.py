"""The transfer saga's stores and runs on the embedded emulators (DynamoDB Local)."""

from __future__ import annotations


