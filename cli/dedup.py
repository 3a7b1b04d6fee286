"""``shanakht dedup …``: start, follow, report, list and cancel gallery-wide de-duplication runs.

Kept apart from ``cli.commands`` (which adds these subcommands with ``add_dedup_commands``) so that
the run's progress bar and report tables stay in one small place.  ``start`` follows the run with
WatchDeduplication until it ends; Ctrl-C stops following, and the run goes on in the server.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial


from shanakht.v1 import identity_pb2 as pb

BAR = 30


@dataclass(frozen=True)
class Helpers:
    """What the commands borrow from ``cli.commands`` (handed in, so that neither module imports the other)."""

    stub: Callable[[argparse.Namespace], object]
    show: Callable[..., int]
    table: Callable[..., None]


def _state(job: pb.DeduplicationJob) -> str:
    return pb.DeduplicationState.Name(job.state).removeprefix("DEDUPLICATION_").lower()


def _bar(job: pb.DeduplicationJob, started: float) -> str:
    total = max(job.subjects_total, job.subjects_done, 1)
    filled = int(BAR * job.subjects_done / total)
    rate = job.subjects_done / max(time.monotonic() - started, 1e-6)
    return f"\r[{'#' * filled}{'.' * (BAR - filled)}] {job.subjects_done}/{total} subjects, {job.pairs_found} pairs, {rate:.0f}/s {_state(job)}"


def _follow(stub, job_id: str, quiet: bool) -> pb.DeduplicationJob:
    """Print a progress bar on standard error until the run ends; Ctrl-C leaves it running."""
    started, last = time.monotonic(), None
    try:
        for job in stub.WatchDeduplication(pb.DeduplicationJobRequest(job_id=job_id)):
            last = job
            if not quiet:
                print(_bar(job, started), end="", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job_id} goes on (shanakht dedup watch {job_id})", file=sys.stderr)
    if not quiet:
        print(file=sys.stderr)
    return last


def _job_row(job: pb.DeduplicationJob) -> tuple:
    return (job.job_id, job.gallery, job.against or "-", _state(job), f"{job.subjects_done}/{job.subjects_total}", job.pairs_found,
            f"{job.min_score:.2f}", job.started_by, job.purpose, job.error)


JOB_HEADERS = ["job", "gallery", "against", "state", "searched", "pairs", "min score", "started by", "purpose", "error"]


def cmd_start(use: Helpers, args: argparse.Namespace) -> int:
    stub = use.stub(args)
    job = stub.StartDeduplication(
        pb.StartDeduplicationRequest(gallery=args.gallery, against=args.against, min_score=args.min_score, purpose=args.purpose),
        timeout=args.timeout,
    )
    if not args.json:
        print(f"started de-duplication job {job.job_id} of {job.gallery}" + (f" against {job.against}" if job.against else ""))
    if args.no_follow:
        return use.show(args, job, lambda: None)
    final = _follow(stub, job.job_id, args.json) or job
    return use.show(args, final, lambda: use.table(JOB_HEADERS, [_job_row(final)]))


def cmd_watch(use: Helpers, args: argparse.Namespace) -> int:
    final = _follow(use.stub(args), args.job, args.json)
    return use.show(args, final, lambda: use.table(JOB_HEADERS, [_job_row(final)]))


def cmd_report(use: Helpers, args: argparse.Namespace) -> int:
    report = use.stub(args).GetDeduplicationReport(pb.DeduplicationJobRequest(job_id=args.job), timeout=args.timeout)

    def human() -> None:
        use.table(JOB_HEADERS, [_job_row(report.job)])
        print()
        use.table(["subject a", "subject b", "score", "per modality", "search record"], [
            (f"{p.gallery_a}/{p.subject_a}", f"{p.gallery_b}/{p.subject_b}", f"{p.score:.2f}",
             " ".join(f"{k}={v:.2f}" for k, v in sorted(p.modality_scores.items())), p.search_id or "-")
            for p in report.pairs
        ])
        print()
        use.table(["cluster", "size", "max score", "members"],
               [(i + 1, len(c.members), f"{c.max_score:.2f}", " ".join(c.members)) for i, c in enumerate(report.clusters)])

    return use.show(args, report, human)


def cmd_list(use: Helpers, args: argparse.Namespace) -> int:
    response = use.stub(args).ListDeduplicationJobs(pb.ListDeduplicationJobsRequest(), timeout=args.timeout)
    return use.show(args, response, lambda: use.table(JOB_HEADERS, [_job_row(j) for j in response.jobs]))


def cmd_cancel(use: Helpers, args: argparse.Namespace) -> int:
    job = use.stub(args).CancelDeduplication(pb.DeduplicationJobRequest(job_id=args.job), timeout=args.timeout)
    return use.show(args, job, lambda: print(f"job {job.job_id}: {_state(job)} after {job.subjects_done}/{job.subjects_total} subjects"))


def add_dedup_commands(sub: argparse._SubParsersAction, client: Callable[..., argparse.ArgumentParser], use: Helpers) -> None:
    """``dedup start|watch|report|list|cancel``, each a client command (``client`` adds server and key options)."""
    dedup = sub.add_parser("dedup", help="gallery-wide de-duplication runs (admin; supervisors may watch, list and report)")
    dedup_sub = dedup.add_subparsers(dest="dedup_command", required=True)
    start = client(dedup_sub, "start", "start a run over GALLERY and follow its progress (Ctrl-C leaves it running)")
    start.add_argument("gallery")
    start.add_argument("--against", default="", help="search GALLERY's subjects against this gallery instead (a merge)")
    start.add_argument("--min-score", type=float, default=0.0, help="report pairs from this score (default: the gallery's threshold)")
    start.add_argument("--purpose", required=True, help="why the run is made (audited)")
    start.add_argument("--no-follow", action="store_true", help="return once started")
    start.set_defaults(func=partial(cmd_start, use))
    for name, help_text, func in (("watch", "follow a run's progress until it ends", cmd_watch),
                                  ("report", "a run's pairs and clusters", cmd_report),
                                  ("cancel", "cancel a running run", cmd_cancel)):
        parser = client(dedup_sub, name, help_text)
        parser.add_argument("job")
        parser.set_defaults(func=partial(func, use))
    client(dedup_sub, "list", "runs, newest first").set_defaults(func=partial(cmd_list, use))



