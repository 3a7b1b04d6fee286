"""``shanakht``: run the server, and talk to one from the shell.

Client commands print human-readable tables by default and JSON with ``--json`` (for
scripts).  A failed RPC prints its status code and message and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import json_format

from enrollment.face import DIMENSION as DEFAULT_FACE_DIMENSION
from enrollment.face import MODEL_ID as DEFAULT_FACE_MODEL
from matcher.finger.iso19794 import FORMAT_ID as FINGER_FORMAT
from transport import settings as settings_module
from matcher.errors import ShanakhtError
from shanakht.client import connect, resolve_key
from cli.dedup import Helpers as DedupHelpers, add_dedup_commands
from cli.transactions import add_import_command
from shanakht.v1 import identity_pb2 as pb
from shanakht.v1 import identity_pb2_grpc as pb_grpc

MODALITIES = {"face": pb.MODALITY_FACE, "finger": pb.MODALITY_FINGER}


def _stub(args: argparse.Namespace) -> pb_grpc.IdentityServiceStub:
    key = resolve_key(args.api_key, args.api_key_file)
    channel = connect(args.server, key, args.tls_ca, args.tls_cert, args.tls_key)
    return pb_grpc.IdentityServiceStub(channel)


def _samples(args: argparse.Namespace) -> list[pb.Sample]:
    """Build samples from --template-npy / --face / --finger (each may repeat)."""
    samples: list[pb.Sample] = []
    for path in args.template_npy or []:
        vectors = np.atleast_2d(np.load(path)).astype("<f4")
        for vector in vectors:
            samples.append(
                pb.Sample(
                    template=pb.Template(
                        modality=MODALITIES[args.modality], model_id=args.model_id, vector=vector.tobytes(),
                        finger_position=args.position or 0,
                    )
                )
            )
    for path in args.face or []:
        samples.append(pb.Sample(face=pb.FaceImage(image=Path(path).read_bytes())))
    for path in args.finger or []:
        samples.append(pb.Sample(finger=pb.FingerImage(image=Path(path).read_bytes(), position=args.position or 0, dpi=args.dpi)))
    if not samples:
        raise SystemExit("give at least one of --template-npy, --face, --finger")
    return samples


def _print_json(message) -> None:
    print(json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), indent=2, sort_keys=True))


def _show(args: argparse.Namespace, response, human: Callable[[], None]) -> int:
    """Print a response as JSON with ``--json`` (scripts), else as ``human`` writes it (people); exit status 0."""
    if args.json:
        _print_json(response)
    else:
        human()
    return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))


def _candidates_table(candidates) -> None:
    if not candidates:
        print("no candidates")
        return
    _table(
        ["rank", "subject", "gallery", "score", "FPIR", "hit", "per modality"],
        [
            (i + 1, c.subject_id, c.gallery, f"{c.score:.2f}", f"{c.fpir:.2g}", "yes" if c.hit else "", " ".join(f"{k}={v:.2f}" for k, v in sorted(c.modality_scores.items())))
            for i, c in enumerate(candidates)
        ],
    )


# -- commands -------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    # Imported here, not at the top: client commands should not pay for loading FAISS and ONNX Runtime.
    import server

    server.serve(settings_module.load(args))
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    metadata = dict(item.split("=", 1) for item in args.meta or [])
    response = _stub(args).Enroll(
        pb.EnrollRequest(
            subject_id=args.subject, gallery=args.gallery, samples=_samples(args), metadata=metadata,
            replace=args.replace, check_duplicates=args.check_duplicates, largest_face=args.largest_face,
        ),
        timeout=args.timeout,
    )
    lines = [f"enrolled {response.subject_id} in {args.gallery}: templates {list(response.template_ids)}, sequence {response.sequence}"]
    lines += [f"  possible duplicate: {d.subject_id} (score {d.score:.2f})" for d in response.duplicates]
    return _show(args, response, lambda: print("\n".join(lines)))


def cmd_identify(args: argparse.Namespace) -> int:
    response = _stub(args).Identify(
        pb.IdentifyRequest(
            samples=_samples(args), galleries=args.gallery, max_candidates=args.top, min_score=args.min_score, purpose=args.purpose
        ),
        timeout=args.timeout,
    )
    return _show(args, response, lambda: _candidates_table(response.candidates))


def cmd_verify(args: argparse.Namespace) -> int:
    response = _stub(args).Verify(
        pb.VerifyRequest(subject_id=args.subject, gallery=args.gallery, samples=_samples(args), purpose=args.purpose),
        timeout=args.timeout,
    )
    verdict = "MATCH" if response.match else "NO MATCH"
    return _show(args, response, lambda: print(f"{verdict}: score {response.score:.2f} (threshold {response.threshold:.2f})"))


def cmd_get(args: argparse.Namespace) -> int:
    response = _stub(args).GetSubject(
        pb.GetSubjectRequest(subject_id=args.subject, gallery=args.gallery, purpose=args.purpose), timeout=args.timeout
    )
    _print_json(response)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    response = _stub(args).DeleteSubject(
        pb.DeleteSubjectRequest(subject_id=args.subject, gallery=args.gallery, reason=args.reason), timeout=args.timeout
    )
    return _show(args, response, lambda: print(f"deleted {args.subject} from {args.gallery} (sequence {response.sequence})"))


def cmd_stats(args: argparse.Namespace) -> int:
    response = _stub(args).GalleryStats(pb.GalleryStatsRequest(galleries=args.gallery or []), timeout=args.timeout)
    rows = []
    for g in response.galleries:
        for i in g.indexes or [pb.IndexStats()]:
            modality = pb.Modality.Name(i.modality).removeprefix("MODALITY_").lower() if i.modality else "-"
            rows.append((g.gallery, g.subjects, modality, i.templates, i.index_type, f"{i.bytes_per_template:.0f}", i.applied_sequence))

    def human() -> None:
        _table(["gallery", "subjects", "modality", "templates", "index", "bytes/template", "sequence"], rows)
        print(f"store sequence {response.store_sequence}")

    return _show(args, response, human)


def cmd_gallery_create(args: argparse.Namespace) -> int:
    modalities = []
    if args.face_model:
        modalities.append(pb.ModalitySettings(modality=pb.MODALITY_FACE, model_id=args.face_model, dimension=args.dimension))
    if args.finger_min_nfiq2 is not None:
        modalities.append(pb.ModalitySettings(modality=pb.MODALITY_FINGER, model_id=FINGER_FORMAT, min_quality=args.finger_min_nfiq2))
    response = _stub(args).CreateGallery(
        pb.CreateGalleryRequest(
            name=args.name, threshold_fmr=args.threshold_fmr, threshold_fpir=args.threshold_fpir, modalities=modalities,
            description=args.description,
        ),
        timeout=args.timeout,
    )
    text = f"created gallery {response.name} (threshold FMR {response.threshold_fmr:g} = score {response.threshold_score:.2f})"
    return _show(args, response, lambda: print(text))


def cmd_gallery_list(args: argparse.Namespace) -> int:
    response = _stub(args).ListGalleries(pb.ListGalleriesRequest(), timeout=args.timeout)
    rows = [
        (g.name, f"{g.threshold_fmr:g}", f"{g.threshold_score:.2f}", " ".join(f"{pb.Modality.Name(m.modality).removeprefix('MODALITY_').lower()}:{m.model_id}/{m.dimension}" + (f" ≥{m.min_quality}" if m.min_quality else "") for m in g.modalities), g.description)
        for g in response.galleries
    ]
    return _show(args, response, lambda: _table(["gallery", "threshold FMR", "score", "modalities", "description"], rows))


# -- local operator commands (open the store directly, on the server's machine) -------------
def _open_store(args: argparse.Namespace):
    from server import open_store

    return open_store(settings_module.load(args))


def _operator_audit(store, payload: dict) -> None:
    import getpass
    import time

    store.append_audit([{"time": time.time(), "principal": f"local:{getpass.getuser()}", "role": "operator", "status": "OK", **payload}])


def cmd_keys_create(args: argparse.Namespace) -> int:
    from transport.auth import create_key

    store = _open_store(args)
    galleries = [g.strip() for g in (args.galleries or "").split(",") if g.strip()]
    principal, key = create_key(store, args.role, galleries, args.name, args.cert_subject)
    _operator_audit(store, {"rpc": "keys.create", "key_id": principal.key_id, "key_role": principal.role,
                            "galleries": list(principal.galleries), "cert_subject": principal.cert_subject})
    if args.json:
        print(json.dumps({"key_id": principal.key_id, "role": principal.role, "galleries": list(principal.galleries), "key": key}))
    else:
        print(f"created {principal.role} key {principal.key_id} for galleries {', '.join(principal.galleries)}")
        print(f"API key (shown once, store it safely): {key}")
    store.close()
    return 0


def cmd_user_create(args: argparse.Namespace) -> int:
    """A console user: a principal that signs in with a password (read from standard input, never a flag)."""
    import getpass

    from transport.sessions import create_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 1
    store = _open_store(args)
    galleries = [g.strip() for g in (args.galleries or "").split(",") if g.strip()]
    try:
        principal = create_user(store, args.user, args.role, password, galleries, args.display_name)
        _operator_audit(store, {"rpc": "user.create", "key_id": principal.key_id, "user": principal.user,
                                "key_role": principal.role, "galleries": list(principal.galleries)})
    finally:
        store.close()
    if args.json:
        print(json.dumps({"key_id": principal.key_id, "user": principal.user, "role": principal.role, "galleries": list(principal.galleries)}))
    else:
        print(f"created {principal.role} user {principal.user} ({principal.key_id}) for galleries {', '.join(principal.galleries)}")
    return 0


def cmd_user_unlock(args: argparse.Namespace) -> int:
    store = _open_store(args)
    try:
        store.clear_sign_in_failures(args.user)
        _operator_audit(store, {"rpc": "user.unlock", "user": args.user})
    finally:
        store.close()
    print(f"unlocked {args.user}: failed sign-ins forgotten")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    # Imported here: the server's commands should not load the web stack.
    from console.app import run

    run(args)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    import time

    store = _open_store(args)
    rows = [
        (p.key_id, p.name, p.role, ",".join(p.galleries), p.cert_subject or "-",
         time.strftime("%Y-%m-%d %H:%M", time.gmtime(p.created_at)),
         time.strftime("%Y-%m-%d %H:%M", time.gmtime(p.revoked_at)) if p.revoked_at else "")
        for p in store.principals()
    ]
    if args.json:
        print(json.dumps([dict(zip(["key_id", "name", "role", "galleries", "cert_subject", "created", "revoked"], r)) for r in rows]))
    else:
        _table(["key id", "name", "role", "galleries", "certificate", "created (UTC)", "revoked (UTC)"], rows)
    store.close()
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    import time

    store = _open_store(args)
    store.revoke_principal(args.key_id, time.time())
    _operator_audit(store, {"rpc": "keys.revoke", "key_id": args.key_id})
    print(f"revoked {args.key_id} (effective within seconds on every server)")
    store.close()
    return 0


def cmd_evidence_rotate_key(args: argparse.Namespace) -> int:
    """Re-seal every evidence image under a new key (servers stopped); the old key is then deleted."""
    from matcher.evidence import rotate_key

    settings = settings_module.load(args)
    store = _open_store(args)
    try:
        resealed = rotate_key(store, settings.evidence_key_path)
        _operator_audit(store, {"rpc": "evidence.rotate-key", "resealed": resealed})
    finally:
        store.close()
    if args.json:
        print(json.dumps({"resealed": resealed, "key": str(settings.evidence_key_path)}))
    else:
        print(f"re-sealed {resealed} evidence images under a new key in {settings.evidence_key_path}; the old key is deleted")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from transport.audit import verify_log

    store = _open_store(args)
    checked, problems = verify_log(store)
    store.close()
    if problems:
        print(f"audit log TAMPERED: {len(problems)} problem(s) in {checked} records")
        for problem in problems:
            print(f"  - {problem}")
        return 2
    print(f"audit log intact: {checked} records, chain verified up to the head")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from transport.audit import export

    since = 0.0
    if args.since:
        try:
            since = float(args.since)
        except ValueError:
            parsed = datetime.fromisoformat(args.since)
            since = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
    store = _open_store(args)
    out = open(args.output, "w") if args.output else sys.stdout
    count = export(store, since, out)
    if args.output:
        out.close()
        print(f"wrote {count} records to {args.output}", file=sys.stderr)
    store.close()
    return 0


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="the server's data directory (embedded store)")
    parser.add_argument("--store", help="sqlite (default) or redis")
    parser.add_argument("--redis-url", help="Redis URL for --store redis")
    parser.add_argument("--redis-prefix", help="Redis key prefix")
    parser.add_argument("--json", action="store_true", help="print JSON")


# -- parser ---------------------------------------------------------------------------------
def _client(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--server", default="localhost:50051", help="host:port of the Shanakht server")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument("--timeout", type=float, default=30.0, help="RPC deadline in seconds")
    parser.add_argument("--api-key", help="API key (default: $SHANAKHT_API_KEY, --api-key-file, $SHANAKHT_DATA_DIR/admin.key, ./data/admin.key)")
    parser.add_argument("--api-key-file", help="file holding the API key (default: $SHANAKHT_API_KEY_FILE)")
    parser.add_argument("--tls-ca", default="", help="CA certificate to verify a TLS server")
    parser.add_argument("--tls-cert", default="", help="client certificate for mutual TLS")
    parser.add_argument("--tls-key", default="", help="private key of --tls-cert")
    return parser


def _sample_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--template-npy", action="append", metavar="FILE", help=".npy vector (or rows of vectors) to send as templates")
    parser.add_argument("--face", action="append", metavar="IMAGE", help="face photo")
    parser.add_argument("--finger", action="append", metavar="IMAGE", help="fingerprint image")
    parser.add_argument("--position", type=int, default=0, help="finger position 1–10 (ISO/IEC 19794-2)")
    parser.add_argument("--dpi", type=int, default=0, help="fingerprint resolution (0: 500)")
    parser.add_argument("--modality", choices=sorted(MODALITIES), default="face", help="modality of --template-npy")
    parser.add_argument("--model-id", default=DEFAULT_FACE_MODEL, help="model id of --template-npy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shanakht", description="Biometric identity matching service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC server")
    settings_module.add_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    enroll = _client(sub, "enroll", "enrol one subject")
    enroll.add_argument("--gallery", required=True)
    enroll.add_argument("--subject", required=True)
    enroll.add_argument("--meta", action="append", metavar="KEY=VALUE", help="metadata (repeatable)")
    enroll.add_argument("--replace", action="store_true", help="overwrite an existing subject")
    enroll.add_argument("--check-duplicates", action="store_true", help="report likely duplicates already enrolled")
    enroll.add_argument("--largest-face", action="store_true", help="enrol the largest face of a group photo")
    _sample_arguments(enroll)
    enroll.set_defaults(func=cmd_enroll)

    identify = _client(sub, "identify", "1:N search of one or more galleries")
    identify.add_argument("--gallery", action="append", required=True, help="gallery to search (repeatable)")
    identify.add_argument("--top", type=int, default=10, help="candidates to return")
    identify.add_argument("--min-score", type=float, default=0.0, help="lowest calibrated score to return")
    identify.add_argument("--purpose", default="", help="case or FIR reference for the audit log")
    _sample_arguments(identify)
    identify.set_defaults(func=cmd_identify)

    verify = _client(sub, "verify", "1:1 comparison with one enrolled subject")
    verify.add_argument("--gallery", required=True)
    verify.add_argument("--subject", required=True)
    verify.add_argument("--purpose", default="")
    _sample_arguments(verify)
    verify.set_defaults(func=cmd_verify)

    get = _client(sub, "get", "show one subject's record")
    get.add_argument("--gallery", required=True)
    get.add_argument("--subject", required=True)
    get.add_argument("--purpose", default="", help="case or FIR reference (required for investigators)")
    get.set_defaults(func=cmd_get)

    delete = _client(sub, "delete", "remove a subject and its templates")
    delete.add_argument("--gallery", required=True)
    delete.add_argument("--subject", required=True)
    delete.add_argument("--reason", default="")
    delete.set_defaults(func=cmd_delete)

    stats = _client(sub, "stats", "gallery sizes and index state")
    stats.add_argument("--gallery", action="append", help="gallery to report (repeatable; default all)")
    stats.set_defaults(func=cmd_stats)

    gallery = sub.add_parser("gallery", help="create and list galleries")
    gallery_sub = gallery.add_subparsers(dest="gallery_command", required=True)
    create = _client(gallery_sub, "create", "create a gallery")
    create.add_argument("--name", required=True)
    create.add_argument("--threshold-fmr", type=float, default=0.0, help="decision threshold as an FMR (default 1e-4)")
    create.add_argument("--threshold-fpir", type=float, default=0.0, help="decide hits of searches by FPIR instead, e.g. 0.01 (0: by --threshold-fmr)")
    create.add_argument("--face-model", default="", help="face model id (default: the server's)")
    create.add_argument("--dimension", type=int, default=DEFAULT_FACE_DIMENSION, help="template dimension of --face-model")
    create.add_argument(
        "--finger-min-nfiq2", type=int, default=None, metavar="N",
        help="hold fingers, refusing prints whose NFIQ 2 score is below N (0–100); with modalities named, only those are held",
    )
    create.add_argument("--description", default="")
    create.set_defaults(func=cmd_gallery_create)
    listing = _client(gallery_sub, "list", "list galleries")
    listing.set_defaults(func=cmd_gallery_list)

    keys = sub.add_parser("keys", help="API keys and certificate principals (run on the server's machine)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create_key = keys_sub.add_parser("create", help="create a key (shown once)")
    create_key.add_argument("--role", required=True, choices=["checkpoint", "investigator", "supervisor", "intake", "oversight", "admin"])
    create_key.add_argument("--galleries", default="", help="comma-separated gallery scope (default: the role's)")
    create_key.add_argument("--name", default="", help="who holds the key, e.g. 'Hotel Eye Lahore'")
    create_key.add_argument("--cert-subject", default="", help="bind to a client certificate common name (mTLS) too")
    _store_arguments(create_key)
    create_key.set_defaults(func=cmd_keys_create)
    list_keys = keys_sub.add_parser("list", help="list keys")
    _store_arguments(list_keys)
    list_keys.set_defaults(func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    _store_arguments(revoke)
    revoke.set_defaults(func=cmd_keys_revoke)

    from transport.auth import ROLES

    user = sub.add_parser("user", help="console users: people who sign in with a password (run on the server's machine)")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create_user = user_sub.add_parser("create", help="create a console user")
    create_user.add_argument("user", help="sign-in name, e.g. inspector.khan")
    create_user.add_argument("--role", required=True, choices=sorted(ROLES))
    create_user.add_argument("--galleries", default="", help="comma-separated gallery scope (default: the role's)")
    create_user.add_argument("--display-name", default="", help="the name shown and audited (default: the sign-in name)")
    create_user.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")
    _store_arguments(create_user)
    create_user.set_defaults(func=cmd_user_create)
    unlock = user_sub.add_parser("unlock", help="forget a user's failed sign-ins (lift a lock-out)")
    unlock.add_argument("user")
    _store_arguments(unlock)
    unlock.set_defaults(func=cmd_user_unlock)

    console = sub.add_parser("console", help="run the web console (a gRPC client of a running server)")
    console.add_argument("--server", default="localhost:50051", help="host:port of the Shanakht server")
    console.add_argument("--host", default="localhost", help="address the console listens on")
    console.add_argument("--port", type=int, default=8080, help="console port (0 picks a free one)")
    console.add_argument("--idle-timeout-s", type=float, default=900.0, help="a console session ends after this many seconds unused")
    console.add_argument("--secret-file", default="", help="file with the cookie-signing secret (default: a new random one per start)")
    console.add_argument("--tls-cert", default="", help="PEM certificate: serve HTTPS (cookies get the Secure flag)")
    console.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")
    console.add_argument("--server-tls-ca", default="", help="CA certificate to verify a TLS server")
    console.set_defaults(func=cmd_console)

    audit = sub.add_parser("audit", help="verify and export the audit log")
    evidence = sub.add_parser("evidence", help="evidence images kept by galleries (run on the server's machine, servers stopped)")
    evidence_sub = evidence.add_subparsers(dest="evidence_command", required=True)
    rotate = evidence_sub.add_parser("rotate-key", help="re-seal every image under a new key and delete the old one")
    _store_arguments(rotate)
    rotate.add_argument("--evidence-key-file", help="the key file, if not DATA_DIR/evidence.key")
    rotate.set_defaults(func=cmd_evidence_rotate_key)

    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify_audit = audit_sub.add_parser("verify", help="check the hash chain; exit 2 and name the record if tampered")
    _store_arguments(verify_audit)
    verify_audit.set_defaults(func=cmd_audit_verify)
    export_audit = audit_sub.add_parser("export", help="write records as JSON lines")
    export_audit.add_argument("--since", default="", help="ISO time (UTC) or Unix seconds")
    export_audit.add_argument("--output", default="", help="file (default: standard output)")
    _store_arguments(export_audit)
    export_audit.set_defaults(func=cmd_audit_export)

    add_dedup_commands(sub, _client, DedupHelpers(_stub, _show, _table))  # de-duplication runs: cli/dedup.py
    add_import_command(sub, _client, _stub)  # ANSI/NIST-ITL transactions: cli/transactions.py
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except ShanakhtError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except settings_module.SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file named on the command line (image, template, key) that cannot be used
        if error.filename is None:
            raise
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
