"""`finfaas audit verify`: walk the audit chains and name every modified, deleted or moved record.

Every chain in the table is walked by default: the functions' own (`<function>-<shard>`) and those
the outbox relay seals from money movements (`<producer>-outbox-<n>`), which share one format.
Exit status: 0 every chain verified, 1 a problem was found, 2 the log could not be verified.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finfaas.platform.audit import (
    AUDIT_KEY_SECRET_NAME,
    AuditStoreError,
    ChainReport,
    anchors_from_json,
    anchors_to_json,
    keyring_from_text,
    verify_log,
)
from finfaas.platform.config import ConfigError, read_secret

EXIT_OK = 0
EXIT_TAMPERED = 1
EXIT_CANNOT_VERIFY = 2
HASH_PREFIX_CHARS = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chain", action="append", metavar="NAME",
                        help="verify only this chain (repeatable); default: every chain")
    parser.add_argument("--table",
                        help="audit table name (default finfaas-<stage>-audit), e.g. a restored copy")
    parser.add_argument("--key-file", type=Path,
                        help=f"audit HMAC keys, one per line (default: the {AUDIT_KEY_SECRET_NAME} secret)")
    parser.add_argument("--anchors", type=Path,
                        help="chain heads saved by an earlier run: detects truncation")
    parser.add_argument("--save-anchors", type=Path,
                        help="after a clean run, save each chain's head here")


def run(args: argparse.Namespace) -> int:
    try:
        keyring = keyring_from_text(_key_text(args.key_file))
        anchors = anchors_from_json(args.anchors.read_text()) if args.anchors else []
    except (OSError, ValueError, KeyError, ConfigError) as error:
        print(f"audit verify: cannot read keys or anchors: {error}", file=sys.stderr)
        return EXIT_CANNOT_VERIFY
    from finfaas.store.audit_store import AuditStore  # boto3 and pynamodb load only when used

    try:
        reports = verify_log(AuditStore(args.table), keyring, args.chain, anchors)
    except AuditStoreError as error:
        print(f"audit verify: cannot read the audit table: {error.__cause__ or error}", file=sys.stderr)
        return EXIT_CANNOT_VERIFY
    if not keyring:
        print("audit verify: no HMAC key configured: hashes are checked, signatures are not")
    for report in reports:
        _print_report(report)
    clean = all(report.ok for report in reports)
    if args.save_anchors:
        if not clean:
            print("audit verify: anchors not saved: the log has problems", file=sys.stderr)
        else:
            args.save_anchors.write_text(anchors_to_json(reports) + "\n")
    problems = sum(len(report.problems) for report in reports)
    print(f"{len(reports)} chain(s), {sum(r.records for r in reports)} record(s), {problems} problem(s)")
    return EXIT_OK if clean else EXIT_TAMPERED


def _key_text(key_file: Path | None) -> str | None:
    if key_file is not None:
        return key_file.read_text()
    return read_secret(AUDIT_KEY_SECRET_NAME, required=False)


def _print_report(report: ChainReport) -> None:
    head = f"head seq {report.head_seq} {report.head_hash[:HASH_PREFIX_CHARS]}"
    status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"chain {report.chain}: {report.records} record(s), {head}: {status}")
    for problem in report.problems:
        print(f"  {problem}")
