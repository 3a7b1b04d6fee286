"""``shanakht import FILE|DIR …``: enrol ANSI/NIST-ITL transactions, one subject each, with a progress bar.

A migration from a legacy AFIS starts with a disk of such files: each goes to EnrollTransaction
(all or nothing), a refusal is reported with its reason and the import goes on, and the summary
counts what was enrolled, refused and why.  Exit status 0 when every file enrolled, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections.abc import Callable
from pathlib import Path

import grpc

from shanakht.v1 import identity_pb2 as pb

SUFFIXES = (".an2", ".an2k", ".nist", ".eft", ".ebts", ".int")
BAR = 30


def _files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        else:
            found.append(path)
    return found


def cmd_import(stub_of: Callable[[argparse.Namespace], object], args: argparse.Namespace) -> int:
    stub = stub_of(args)
    files = _files(args.paths)
    enrolled, refused = [], []
    for i, path in enumerate(files, start=1):
        if not args.json:
            filled = BAR * i // max(len(files), 1)
            print(f"\r[{'#' * filled}{'.' * (BAR - filled)}] {i}/{len(files)} {path.name[:40]:<40}", end="", file=sys.stderr, flush=True)
        try:
            request = pb.EnrollTransactionRequest(gallery=args.gallery, transaction=path.read_bytes(), replace=args.replace,
                                                  check_duplicates=args.check_duplicates)
            response = stub.EnrollTransaction(request, timeout=args.timeout)
            enrolled.append((path, response))
        except grpc.RpcError as error:
            refused.append((path, error.code().name, error.details()))
        except OSError as error:
            refused.append((path, "UNREADABLE", str(error)))
    if args.json:
        for path, response in enrolled:
            print(json.dumps({"file": str(path), "subject_id": response.enrolled.subject_id,
                              "template_ids": list(response.enrolled.template_ids), "skipped": [s.reason for s in response.skipped]}))
        for path, code, detail in refused:
            print(json.dumps({"file": str(path), "refused": code, "reason": detail}))
    else:
        print(file=sys.stderr)
        for path, response in enrolled:
            e = response.enrolled
            print(f"enrolled {path.name} as {e.subject_id}: {len(e.template_ids)} templates ({', '.join(response.samples)})")
            for s in response.skipped:
                print(f"  skipped Type-{s.record_type} IDC {s.idc}: {s.reason}")
            for d in e.duplicates:
                print(f"  possible duplicate: {d.subject_id} (score {d.score:.2f})")
        for path, code, detail in refused:
            print(f"refused  {path.name}: {code} {detail}")
        reasons = collections.Counter(code for _, code, _ in refused)
        print(f"{len(enrolled)} enrolled, {len(refused)} refused" + (f" ({', '.join(f'{n} {c}' for c, n in reasons.items())})" if refused else ""))
    return 0 if not refused else 1


def add_import_command(sub: argparse._SubParsersAction, client: Callable[..., argparse.ArgumentParser],
                       stub_of: Callable[[argparse.Namespace], object]) -> None:
    parser = client(sub, "import", "enrol ANSI/NIST-ITL transactions (files, or directories of .an2/.an2k/.nist/.eft files), one subject each")
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR")
    parser.add_argument("--gallery", required=True, help="gallery to enrol into")
    parser.add_argument("--replace", action="store_true", help="replace subjects that exist")
    parser.add_argument("--check-duplicates", action="store_true", help="report likely duplicates already in the gallery")
    parser.set_defaults(func=lambda args: cmd_import(stub_of, args))
