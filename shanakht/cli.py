"""``shanakht``: run the server, and talk to one from the shell.

Client commands print human-readable tables by default and JSON with ``--json`` (for
scripts).  A failed RPC prints its status code and message and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import json_format

from shanakht import settings as settings_module
from shanakht.v1 import identity_pb2 as pb
from shanakht.v1 import identity_pb2_grpc as pb_grpc

MODALITIES = {"face": pb.MODALITY_FACE, "finger": pb.MODALITY_FINGER}


def _stub(args: argparse.Namespace) -> pb_grpc.IdentityServiceStub:
    max_bytes = 64 * 1024 * 1024
    channel = grpc.insecure_channel(
        args.server, options=[("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes)]
    )
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
        ["rank", "subject", "gallery", "score", "hit", "per modality"],
        [
            (i + 1, c.subject_id, c.gallery, f"{c.score:.2f}", "yes" if c.hit else "", " ".join(f"{k}={v:.2f}" for k, v in sorted(c.modality_scores.items())))
            for i, c in enumerate(candidates)
        ],
    )


# -- commands -------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
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
    if args.json:
        _print_json(response)
    else:
        print(f"enrolled {response.subject_id} in {args.gallery}: templates {list(response.template_ids)}, sequence {response.sequence}")
        for d in response.duplicates:
            print(f"  possible duplicate: {d.subject_id} (score {d.score:.2f})")
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    response = _stub(args).Identify(
        pb.IdentifyRequest(
            samples=_samples(args), galleries=args.gallery, max_candidates=args.top, min_score=args.min_score, purpose=args.purpose
        ),
        timeout=args.timeout,
    )
    if args.json:
        _print_json(response)
    else:
        _candidates_table(response.candidates)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    response = _stub(args).Verify(
        pb.VerifyRequest(subject_id=args.subject, gallery=args.gallery, samples=_samples(args), purpose=args.purpose),
        timeout=args.timeout,
    )
    if args.json:
        _print_json(response)
    else:
        verdict = "MATCH" if response.match else "NO MATCH"
        print(f"{verdict}: score {response.score:.2f} (threshold {response.threshold:.2f})")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    response = _stub(args).GetSubject(pb.GetSubjectRequest(subject_id=args.subject, gallery=args.gallery), timeout=args.timeout)
    _print_json(response)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    response = _stub(args).DeleteSubject(
        pb.DeleteSubjectRequest(subject_id=args.subject, gallery=args.gallery, reason=args.reason), timeout=args.timeout
    )
    if args.json:
        _print_json(response)
    else:
        print(f"deleted {args.subject} from {args.gallery} (sequence {response.sequence})")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    response = _stub(args).GalleryStats(pb.GalleryStatsRequest(galleries=args.gallery or []), timeout=args.timeout)
    if args.json:
        _print_json(response)
        return 0
    rows = []
    for g in response.galleries:
        for i in g.indexes or [pb.IndexStats()]:
            modality = pb.Modality.Name(i.modality).removeprefix("MODALITY_").lower() if i.modality else "-"
            rows.append((g.gallery, g.subjects, modality, i.templates, i.index_type, f"{i.bytes_per_template:.0f}", i.applied_sequence))
    _table(["gallery", "subjects", "modality", "templates", "index", "bytes/template", "sequence"], rows)
    print(f"store sequence {response.store_sequence}")
    return 0


def cmd_gallery_create(args: argparse.Namespace) -> int:
    modalities = []
    if args.face_model:
        modalities.append(pb.ModalitySettings(modality=pb.MODALITY_FACE, model_id=args.face_model, dimension=args.dimension))
    response = _stub(args).CreateGallery(
        pb.CreateGalleryRequest(name=args.name, threshold_fmr=args.threshold_fmr, modalities=modalities, description=args.description),
        timeout=args.timeout,
    )
    if args.json:
        _print_json(response)
    else:
        print(f"created gallery {response.name} (threshold FMR {response.threshold_fmr:g} = score {response.threshold_score:.2f})")
    return 0


def cmd_gallery_list(args: argparse.Namespace) -> int:
    response = _stub(args).ListGalleries(pb.ListGalleriesRequest(), timeout=args.timeout)
    if args.json:
        _print_json(response)
        return 0
    _table(
        ["gallery", "threshold FMR", "score", "modalities", "description"],
        [
            (g.name, f"{g.threshold_fmr:g}", f"{g.threshold_score:.2f}", " ".join(f"{pb.Modality.Name(m.modality).removeprefix('MODALITY_').lower()}:{m.model_id}/{m.dimension}" for m in g.modalities), g.description)
            for g in response.galleries
        ],
    )
    return 0


# -- parser ---------------------------------------------------------------------------------
def _client(sub: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--server", default="localhost:50051", help="host:port of the Shanakht server")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument("--timeout", type=float, default=30.0, help="RPC deadline in seconds")
    return parser


def _sample_arguments(parser: argparse.ArgumentParser) -> None:
    from shanakht.settings import DEFAULT_FACE_MODEL

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
    create.add_argument("--face-model", default="", help="face model id (default: the server's)")
    create.add_argument("--dimension", type=int, default=512, help="template dimension of --face-model")
    create.add_argument("--description", default="")
    create.set_defaults(func=cmd_gallery_create)
    listing = _client(gallery_sub, "list", "list galleries")
    listing.set_defaults(func=cmd_gallery_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
