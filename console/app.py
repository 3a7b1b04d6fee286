"""The console's pages: sign-in, search and adjudication, the verification queue, intake, oversight.

Every page is rendered on the server from the answers of gRPC calls made as the signed-in user; the
server decides what that user may do and see (roles, gallery scopes, blind verification), and the
console only decides which pages to offer.  No page runs a script: the Content-Security-Policy
below forbids them, along with anything not served from here.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import math
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.charts import histogram_svg
from console.i18n import LANGUAGES, language, load_translations
from console.service import Service, ServiceError, pb
from console.sessions import COOKIE, ConsoleSession, SessionStore, csrf_ok

HERE = Path(__file__).parent

def N_(message: str) -> str:
    """Mark a message for the catalogue; it is translated where it is shown (``_`` in the templates)."""
    return message


#: No script, no frame, no plug-in, nothing from another origin; images from here or the probe the user just chose.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
]

#: Which roles each part of the console is for; the server enforces the same and more.
PAGES: dict[str, frozenset[str]] = {
    "search": frozenset({"investigator", "supervisor", "admin"}),
    "intake": frozenset({"intake", "admin"}),
    "oversight": frozenset({"oversight", "supervisor", "admin"}),
    "images": frozenset({"investigator", "supervisor", "admin", "intake"}),
}
#: Roles of systems, not people: their users are refused at sign-in.
MACHINE_ROLES = frozenset({"checkpoint"})
DECISIONS = {"identification": pb.DECISION_IDENTIFICATION, "exclusion": pb.DECISION_EXCLUSION, "inconclusive": pb.DECISION_INCONCLUSIVE}
STATUS_NAMES = {
    pb.CANDIDATE_PENDING: "pending", pb.CANDIDATE_AWAITING_VERIFICATION: "awaiting verification",
    pb.CANDIDATE_CONFIRMED: "confirmed identification", pb.CANDIDATE_EXCLUDED: "excluded",
    pb.CANDIDATE_INCONCLUSIVE: "inconclusive", pb.CANDIDATE_DISPUTED: "disputed",
}
#: Words the templates translate by value (roles, modalities), listed here for the catalogue.
CATALOGUE_WORDS = (N_("investigator"), N_("supervisor"), N_("intake"), N_("oversight"), N_("admin"), N_("checkpoint"),
                   N_("face"), N_("finger"), N_("pending"), N_("awaiting verification"), N_("confirmed identification"),
                   N_("excluded"), N_("inconclusive"), N_("disputed"))
FINGER_ROWS = 4
MAX_UPLOAD_BYTES = 15 * 1024 * 1024
# Leading bytes of the image formats the server reads (TIFF both byte orders; WSQ's SOI marker).
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"P5", b"P2", b"\xff\xa0")


@dataclass(frozen=True)
class Notice:
    """A message for the page, translated when shown: a catalogue message id and its parameters."""

    message: str
    params: dict[str, Any] = field(default_factory=dict)
    kind: str = "error"  # error or info


@dataclass(frozen=True)
class ConsoleConfig:
    """How the console runs."""

    server: str = "localhost:50051"
    idle_timeout_s: float = 900.0
    secure_cookies: bool = False  # set when served over TLS
    secret: bytes = b""
    server_tls_ca: str = ""


class SecurityHeaders:
    """ASGI middleware: the security headers on every response, static files and errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((k, v) for k, v in SECURITY_HEADERS if k not in names)]
            await send(message)

        await self.app(scope, receive, sending)


def _is_image(data: bytes) -> bool:
    return data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


class Console:
    """The pages, bound to one server and one session store."""

    def __init__(self, config: ConsoleConfig, service: Service | None = None) -> None:
        self.config = config
        self.service = service or Service(config.server, config.server_tls_ca)
        self.sessions = SessionStore(config.secret or secrets.token_bytes(32), config.idle_timeout_s)
        self.user_languages: dict[str, str] = {}  # each user's chosen language, for their next sign-in
        self.translations = {code: load_translations(code) for code in LANGUAGES}
        self.templates = {code: self._environment(code) for code in LANGUAGES}

    def _environment(self, code: str) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, extensions=["jinja2.ext.i18n"],
            undefined=jinja2.StrictUndefined,
        )
        env.install_gettext_translations(self.translations[code], newstyle=True)  # type: ignore[attr-defined]
        env.filters["score"] = lambda v: f"{v:.2f}"
        env.filters["rate"] = lambda v: "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2g}"
        env.filters["percent"] = lambda v: "—" if v is None else f"{100 * v:.1f} %"
        env.filters["when"] = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if t else ""
        env.filters["modality"] = lambda m: "face" if m == pb.MODALITY_FACE else "finger" if m == pb.MODALITY_FINGER else "?"
        return env

    # -- plumbing -------------------------------------------------------------------------
    def render(self, request: Request, session: ConsoleSession, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        lang = language(session.lang)
        notices = list(values.pop("notices", []))
        if session.notice:
            notice = session.notice
            notices.insert(0, notice if isinstance(notice, Notice) else Notice(notice, kind="info"))
            session.notice = None
        html = self.templates[lang.code].get_template(template).render(
            session=session, lang=lang, languages=LANGUAGES, pages=self._pages_of(session), notices=notices,
            path=request.url.path, **values,
        )
        response = HTMLResponse(html, status_code=status)
        self._set_cookie(response, session)
        return response

    def _set_cookie(self, response: Response, session: ConsoleSession) -> None:
        response.set_cookie(
            COOKIE, self.sessions.cookie_value(session), httponly=True, samesite="strict", secure=self.config.secure_cookies, path="/"
        )

    @staticmethod
    def _pages_of(session: ConsoleSession) -> list[str]:
        return [page for page, roles in PAGES.items() if session.role in roles and page != "images"]

    def _session(self, request: Request) -> tuple[ConsoleSession, bool]:
        """This browser's session (a new anonymous one if it has none), and whether its last one idled out."""
        session, expired = self.sessions.from_cookie(request.cookies.get(COOKIE))
        if session is not None:
            return session, False
        if expired is not None and expired.token:
            self._end_server_session(expired.token)
        lang = expired.lang if expired else request.cookies.get("lang", "en")
        notice = N_("Your session ended after a period without use; please sign in again.") if expired and expired.token else ""
        return self.sessions.new(language(lang).code, notice), bool(expired and expired.token)

    def _end_server_session(self, token: str) -> None:
        try:
            self.service.call("SignOut", pb.SignOutRequest(), token)
        except ServiceError:
            pass  # already gone on the server (its own idle time-out)

    def _redirect(self, url: str, session: ConsoleSession) -> RedirectResponse:
        response = RedirectResponse(url, status_code=303)
        self._set_cookie(response, session)
        return response

    def _signed_out(self, session: ConsoleSession, notice: str) -> RedirectResponse:
        """The server ended the session (idle, revoked): forget it here and ask for a new sign-in."""
        self.sessions.drop(session)
        fresh = self.sessions.new(session.lang, notice)
        return self._redirect("/signin", fresh)

    def _guard(self, request: Request, page: str) -> ConsoleSession | Response:
        session, _ = self._session(request)
        if not session.signed_in:
            return self._redirect("/signin", session)
        if session.role not in PAGES[page]:
            return self.render(request, session, "refused.html", 403,
                               reason=Notice(N_("Your role (%(role)s) does not use this page."), {"role": session.role}))
        return session

    async def _form(self, request: Request, session: ConsoleSession) -> FormData | Response:
        """The submitted form once its CSRF token is this session's; else a 403 page and nothing done."""
        try:
            form = await request.form(max_files=40, max_fields=200)
        except Exception:
            form = FormData()
        if not csrf_ok(session, form.get("csrf")):
            return self.render(request, session, "refused.html", 403, reason=Notice(
                N_("The form was refused: its security token was missing or wrong. Nothing was changed; reload the page and try again.")))
        return form

    async def call(self, session: ConsoleSession, method: str, request: Any) -> Any:
        return await run_in_threadpool(self.service.call, method, request, session.token)

    def _failure(self, request: Request, session: ConsoleSession, error: ServiceError, template: str, **values: Any) -> Response:
        if error.session_ended:
            return self._signed_out(session, N_("The server ended your session; please sign in again."))
        notice = Notice(N_("The server refused the request: %(reason)s"), {"reason": error.message})
        return self.render(request, session, template, error.http_status, notices=[notice], **values)

    # -- sign-in ------------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        session, _ = self._session(request)
        if not session.signed_in:
            return self._redirect("/signin", session)
        pages = self._pages_of(session)
        return self._redirect(f"/{pages[0]}" if pages else "/signin", session)

    async def signin_page(self, request: Request) -> Response:
        session, _ = self._session(request)
        if session.signed_in:
            return self._redirect("/", session)
        return self.render(request, session, "signin.html")

    async def signin(self, request: Request) -> Response:
        session, _ = self._session(request)
        form = await self._form(request, session)
        if isinstance(form, Response):
            return form
        user, password = str(form.get("user", "")).strip(), str(form.get("password", ""))
        if not user or not password:
            return self.render(request, session, "signin.html", 400, notices=[Notice(N_("Enter your user name and password."))], user=user)
        try:
            signed = await run_in_threadpool(self.service.call, "SignIn", pb.SignInRequest(user=user, password=password), None)
        except ServiceError as error:
            if error.session_ended:  # wrong password, unknown user, or locked: the server's words say which
                message = (N_("This account is locked after repeated failed sign-ins: %(reason)s") if "locked" in error.message
                           else N_("Unknown user or wrong password."))
                return self.render(request, session, "signin.html", 401, notices=[Notice(message, {"reason": error.message})], user=user)
            return self._failure(request, session, error, "signin.html", user=user)
        if signed.role in MACHINE_ROLES:
            self._end_server_session(signed.session_token)
            return self.render(request, session, "signin.html", 403, user=user, notices=[Notice(N_(
                "The console is for people. %(role)s accounts are for systems such as hotel and checkpoint cameras; "
                "they call the service directly."), {"role": signed.role})])
        # A fresh session id and CSRF token at sign-in: an id planted before it is worth nothing after.
        if session.token:  # signing in again over a live session ends the old one on the server too
            await run_in_threadpool(self._end_server_session, session.token)
        self.sessions.drop(session)
        fresh = self.sessions.new(self.user_languages.get(user, session.lang))
        fresh.token, fresh.user, fresh.name, fresh.role, fresh.galleries = (
            signed.session_token, user, signed.name, signed.role, tuple(signed.galleries))
        return self._redirect("/", fresh)

    async def signout(self, request: Request) -> Response:
        session, _ = self._session(request)
        form = await self._form(request, session)
        if isinstance(form, Response):
            return form
        if session.token:
            await run_in_threadpool(self._end_server_session, session.token)
        self.sessions.drop(session)
        fresh = self.sessions.new(session.lang, N_("You are signed out."))
        return self._redirect("/signin", fresh)

    async def set_language(self, request: Request) -> Response:
        session, _ = self._session(request)
        form = await self._form(request, session)
        if isinstance(form, Response):
            return form
        session.lang = language(str(form.get("lang", ""))).code
        if session.user:
            self.user_languages[session.user] = session.lang
        back = str(form.get("back", "/"))
        response = self._redirect(back if back.startswith("/") and not back.startswith("//") else "/", session)
        response.set_cookie("lang", session.lang, httponly=True, samesite="strict", secure=self.config.secure_cookies, path="/")
        return response

    # -- samples from uploads -------------------------------------------------------------
    async def _samples(self, form: FormData) -> tuple[list[pb.Sample], list[Notice], list[str]]:
        """Face photos (``face``, repeatable) and finger images with positions (``finger_N`` + ``position_N``).

        Returns the samples, what is wrong with the upload (then nothing is sent), and data: URIs of the
        face photos to show beside the answer."""
        samples: list[pb.Sample] = []
        problems: list[Notice] = []
        previews: list[str] = []
        uploads: list[tuple[str, UploadFile, int]] = [("face", f, 0) for f in form.getlist("face") if isinstance(f, UploadFile)]
        for row in range(1, FINGER_ROWS + 1):
            upload = form.get(f"finger_{row}")
            if isinstance(upload, UploadFile) and upload.filename:
                position = str(form.get(f"position_{row}", "0"))
                uploads.append(("finger", upload, int(position) if position.isdigit() else 0))
        total = 0
        for kind, upload, position in uploads:
            if not upload.filename:
                continue
            data = await upload.read()
            total += len(data)
            if not data:
                problems.append(Notice(N_("“%(file)s” is empty."), {"file": upload.filename}))
            elif not _is_image(data):
                problems.append(Notice(N_("“%(file)s” is not an image (JPEG, PNG, BMP, TIFF, WebP, PGM or WSQ)."), {"file": upload.filename}))
            elif kind == "finger" and not 1 <= position <= 10:
                problems.append(Notice(N_("Choose the finger position (1–10) of “%(file)s”."), {"file": upload.filename}))
            elif kind == "face":
                samples.append(pb.Sample(face=pb.FaceImage(image=data)))
                if data.startswith((b"\xff\xd8\xff", b"\x89PNG")):
                    import base64

                    media = "jpeg" if data.startswith(b"\xff\xd8") else "png"
                    previews.append(f"data:image/{media};base64,{base64.b64encode(data).decode()}")
            else:
                samples.append(pb.Sample(finger=pb.FingerImage(image=data, position=position)))
        if total > MAX_UPLOAD_BYTES:
            problems.append(Notice(N_("The images are too large together (at most %(mb)d MB)."), {"mb": MAX_UPLOAD_BYTES // 2**20}))
        if not samples and not problems:
            problems.append(Notice(N_("Choose a face photo or at least one finger image.")))
        return samples, problems, previews

    async def _gallery_names(self, session: ConsoleSession) -> list[str]:
        try:
            listed = await self.call(session, "ListGalleries", pb.ListGalleriesRequest())
            names = [g.name for g in listed.galleries]
        except ServiceError:
            names = list(session.galleries)
        return [n for n in names if "*" in session.galleries or n in session.galleries]

    # -- search -------------------------------------------------------------------------
    async def search_page(self, request: Request) -> Response:
        session = self._guard(request, "search")
        if isinstance(session, Response):
            return session
        galleries = await self._gallery_names(session)
        return self.render(request, session, "search.html", galleries=galleries, chosen=galleries[:1], purpose="", finger_rows=FINGER_ROWS)

    async def search(self, request: Request) -> Response:
        session = self._guard(request, "search")
        if isinstance(session, Response):
            return session
        form = await self._form(request, session)
        if isinstance(form, Response):
            return form
        galleries = await self._gallery_names(session)
        chosen = [str(g) for g in form.getlist("gallery")]
        purpose = str(form.get("purpose", "")).strip()
        page = {"galleries": galleries, "chosen": chosen, "purpose": purpose, "finger_rows": FINGER_ROWS}
        problems: list[Notice] = []
        if not purpose:
            problems.append(Notice(N_("State the purpose of this search (FIR or case number); nothing was searched.")))
        if not chosen:
            problems.append(Notice(N_("Choose at least one gallery to search.")))
        samples, upload_problems, previews = await self._samples(form)
        problems += upload_problems
        if problems:
            return self.render(request, session, "search.html", 400, notices=problems, **page)
        try:
            found = await self.call(session, "Identify", pb.IdentifyRequest(
                samples=samples, galleries=chosen, purpose=purpose, max_candidates=10))
        except ServiceError as error:
            return self._failure(request, session, error, "search.html", **page)
        if found.search_id:
            session.purposes[found.search_id] = purpose
            return self._redirect(f"/searches/{found.search_id}", session)
        # A server that keeps no search record: show the candidates, nothing to decide.
        return self.render(request, session, "results.html", found=found, purpose=purpose, previews=previews)

    async def searches(self, request: Request) -> Response:
        session = self._guard(request, "search")
        if isinstance(session, Response):
            return session
        everyone = session.role in ("supervisor", "admin") and request.query_params.get("everyone") == "1"
        try:
            listed = await self.call(session, "ListSearches", pb.ListSearchesRequest(everyone=everyone, page_size=100))
        except ServiceError as error:
            return self._failure(request, session, error, "searches.html", searches=[], everyone=everyone)
        return self.render(request, session, "searches.html", searches=listed.searches, everyone=everyone)

    async def search_record(self, request: Request) -> Response:
        session = self._guard(request, "search")
        if isinstance(session, Response):
            return session
        search_id = request.path_params["search_id"]
        try:
            record = await self.call(session, "GetSearch", pb.GetSearchRequest(search_id=search_id))
        except ServiceError as error:
            return self._failure(request, session, error, "refused.html", reason=Notice(N_("This search cannot be shown.")))
        session.purposes[search_id] = record.purpose
        return self.render(request, session, "search_record.html", record=record, statuses=STATUS_NAMES,
                           own=record.examiner in (session.name, session.user))

    async def decide(self, request: Request) -> Response:
        session = self._guard(request, "search")
        if isinstance(session, Response):
            return session
        form = await self._form(request, session)
        if isinstance(form, Response):
            return form
        search_id = request.path_params["search_id"]
        back = "/queue" if form.get("back") == "queue" else f"/searches/{search_id}"
        kind = DECISIONS.get(str(form.get("kind", "")))
        reason = str(form.get("reason", "")).strip()
        if kind is None or not reason:
            session.notice = Notice(N_("Choose identification, exclusion or inconclusive, and give a reason; nothing was recorded."))
            return self._redirect(back, session)
        try:
            await self.call(session, "RecordDecision", pb.RecordDecisionRequest(
                search_id=search_id, gallery=str(form.get("gallery", "")), subject_id=str(form.get("subject_id", "")),
                kind=kind, reason=reason))
        except ServiceError as error:
            if error.session_ended:
                return self._signed_out(session, N_("The server ended your session; please sign in again."))
            session.notice = Notice(N_("The decision was not recorded: %(reason)s"), {"reason": error.message})
            return self._redirect(back, session)
        session.notice = Notice(N_("Decision recorded."), kind="info")
        return self._redirect(back, session)

    async def queue(self, request: Request) -> Response:
        session = self._guard(request, "search")
        if isinstance(session, Response):
            return session
        try:
            queued = await self.call(session, "VerificationQueue", pb.VerificationQueueRequest(page_size=100))
        except ServiceError as error:
            return self._failure(request, session, error, "queue.html", items=[])
        for item in queued.items:
            session.purposes[item.search_id] = item.purpose
        return self.render(request, session, "queue.html", items=queued.items)

    # -- intake -------------------------------------------------------------------------
    async def intake_page(self, request: Request) -> Response:
        session = self._guard(request, "intake")
        if isinstance(session, Response):
            return session
        return self.render(request, session, "intake.html", **await self._intake_values(session))

    async def _intake_values(self, session: ConsoleSession, **values: Any) -> dict[str, Any]:
        galleries = await self._gallery_names(session)
        default = "inmates" if "inmates" in galleries else (galleries[0] if galleries else "")
        return {"galleries": galleries, "gallery": default, "finger_rows": FINGER_ROWS, "enrolled": None, "verified": None,
                "subject": "", "display_name": "", **values}

    async def intake_enroll(self, request: Request) -> Response:
        session = self._guard(request, "intake")
        if isinstance(session, Response):
            return session
        form = await self._form(request, session)
        if isinstance(form, Response):
            return form
        subject, gallery = str(form.get("subject", "")).strip(), str(form.get("gallery", "")).strip()
        display_name = str(form.get("name", "")).strip()
        values = await self._intake_values(session, subject=subject, display_name=display_name)
        values["gallery"] = gallery or values["gallery"]
        problems = [] if subject else [Notice(N_("Enter the inmate's number (subject id)."))]
        samples, upload_problems, previews = await self._samples(form)
        problems += upload_problems
        if problems:
            return self.render(request, session, "intake.html", 400, notices=problems, **values)
        metadata = {"name": display_name} if display_name else {}
        try:
            enrolled = await self.call(session, "Enroll", pb.EnrollRequest(
                subject_id=subject, gallery=values["gallery"], samples=samples, metadata=metadata, check_duplicates=True))
        except ServiceError as error:
            return self._failure(request, session, error, "intake.html", **values)
        values.update(enrolled=enrolled, previews=previews, purpose=f"intake {subject}")
        return self.render(request, session, "intake.html", **values)

    async def intake_verify(self, request: Request) -> Response:
        session = self._guard(request, "intake")
        if isinstance(session, Response):
            return session
        form = await self._form(request, session)
        if isinstance(form, Response):
            return form
        subject, gallery = str(form.get("subject", "")).strip(), str(form.get("gallery", "")).strip()
        values = await self._intake_values(session, subject=subject)
        values["gallery"] = gallery or values["gallery"]
        problems = [] if subject else [Notice(N_("Enter the inmate's number (subject id)."))]
        samples, upload_problems, _ = await self._samples(form)
        problems += upload_problems
        if problems:
            return self.render(request, session, "intake.html", 400, notices=problems, **values)
        try:
            verified = await self.call(session, "Verify", pb.VerifyRequest(
                subject_id=subject, gallery=values["gallery"], samples=samples, purpose=f"intake {subject}"))
        except ServiceError as error:
            return self._failure(request, session, error, "intake.html", **values)
        values.update(verified=verified)
        return self.render(request, session, "intake.html", **values)

    # -- oversight ----------------------------------------------------------------------
    async def _report(self, request: Request, session: ConsoleSession) -> tuple[Any, dict[str, str]]:
        period = {k: request.query_params.get(k, "") for k in ("since", "until")}
        bounds = {}
        for key, text in period.items():
            try:
                bounds[key] = dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() if text else 0.0
            except ValueError:
                bounds[key] = 0.0
                period[key] = ""
        if bounds["until"]:
            bounds["until"] += 86_400  # the whole of the last day
        report = await self.call(session, "GetOversightReport", pb.OversightReportRequest(since=bounds["since"], until=bounds["until"]))
        return report, period

    async def oversight(self, request: Request) -> Response:
        session = self._guard(request, "oversight")
        if isinstance(session, Response):
            return session
        try:
            report, period = await self._report(request, session)
        except ServiceError as error:
            return self._failure(request, session, error, "refused.html", reason=Notice(N_("The oversight report cannot be shown.")))
        translate = self.translations[language(session.lang).code].gettext
        charts = {
            "confirmed": histogram_svg(report.confirmed_scores.edges, report.confirmed_scores.counts,
                                       translate("Scores of confirmed identifications"), "confirmed"),
            "excluded": histogram_svg(report.excluded_scores.edges, report.excluded_scores.counts,
                                      translate("Scores of excluded candidates"), "excluded"),
        }
        totals = {name: sum(getattr(r, name) for r in report.rows)
                  for name in ("searches", "searches_with_hits", "identifications", "exclusions", "inconclusive")}
        excluded_share = report.excluded_hits / report.adjudicated_hits if report.adjudicated_hits else None
        return self.render(request, session, "oversight.html", report=report, charts=charts, totals=totals,
                           excluded_share=excluded_share, period=period)

    async def oversight_csv(self, request: Request) -> Response:
        session = self._guard(request, "oversight")
        if isinstance(session, Response):
            return session
        try:
            report, _ = await self._report(request, session)
        except ServiceError as error:
            return PlainTextResponse(error.message, status_code=error.http_status)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["week", "purpose_kind", "role", "gallery", "searches", "searches_with_hits", "identifications",
                         "exclusions", "inconclusive"])
        for r in report.rows:
            writer.writerow([r.week, r.purpose_kind, r.role, r.gallery, r.searches, r.searches_with_hits, r.identifications,
                             r.exclusions, r.inconclusive])
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="shanakht-oversight.csv"'})

    # -- evidence images ------------------------------------------------------------------
    async def _image(self, session: ConsoleSession, request: pb.GetImageRequest) -> Response:
        try:
            image = await self.call(session, "GetImage", request)
        except ServiceError as error:
            return PlainTextResponse(error.message, status_code=error.http_status)
        return Response(image.image, media_type=image.media_type or "application/octet-stream")

    def _image_guard(self, request: Request) -> ConsoleSession | Response:
        session, _ = self._session(request)
        if not session.signed_in:
            return PlainTextResponse("sign in first", status_code=401)
        if session.role not in PAGES["images"]:
            return PlainTextResponse("this role sees no images", status_code=403)
        return session

    async def probe_image(self, request: Request) -> Response:
        session = self._image_guard(request)
        if isinstance(session, Response):
            return session
        search_id = request.path_params["search_id"]
        purpose = session.purposes.get(search_id) or request.query_params.get("purpose", "")
        return await self._image(session, pb.GetImageRequest(
            probe=pb.ProbeImageRef(search_id=search_id, sample_index=int(request.path_params["index"])), purpose=purpose))

    async def template_image(self, request: Request) -> Response:
        session = self._image_guard(request)
        if isinstance(session, Response):
            return session
        p = request.path_params
        return await self._image(session, pb.GetImageRequest(
            sample=pb.SampleImageRef(gallery=p["gallery"], subject_id=p["subject_id"], template_id=int(p["template_id"])),
            purpose=request.query_params.get("purpose", "")))

    async def subject_image(self, request: Request) -> Response:
        """A subject's first kept image (a face before a finger), for candidate lists."""
        session = self._image_guard(request)
        if isinstance(session, Response):
            return session
        p = request.path_params
        search = request.query_params.get("search", "")
        purpose = session.purposes.get(search) or request.query_params.get("purpose", "")
        try:
            subject = await self.call(session, "GetSubject", pb.GetSubjectRequest(gallery=p["gallery"], subject_id=p["subject_id"], purpose=purpose))
        except ServiceError as error:
            return PlainTextResponse(error.message, status_code=error.http_status)
        kept = sorted((t for t in subject.templates if t.has_image), key=lambda t: (t.modality != pb.MODALITY_FACE, t.template_id))
        if not kept:
            return PlainTextResponse("no image is kept for this subject", status_code=404)
        return await self._image(session, pb.GetImageRequest(
            sample=pb.SampleImageRef(gallery=p["gallery"], subject_id=p["subject_id"], template_id=kept[0].template_id), purpose=purpose))

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")


def create_app(config: ConsoleConfig, service: Service | None = None) -> ASGIApp:
    """The console as an ASGI app (uvicorn serves it; tests drive it in-process too)."""
    console = Console(config, service)
    routes = [
        Route("/", console.home),
        Route("/healthz", console.health),
        Route("/signin", console.signin_page, methods=["GET"]),
        Route("/signin", console.signin, methods=["POST"]),
        Route("/signout", console.signout, methods=["POST"]),
        Route("/lang", console.set_language, methods=["POST"]),
        Route("/search", console.search_page, methods=["GET"]),
        Route("/search", console.search, methods=["POST"]),
        Route("/searches", console.searches),
        Route("/searches/{search_id}", console.search_record),
        Route("/searches/{search_id}/decide", console.decide, methods=["POST"]),
        Route("/queue", console.queue),
        Route("/intake", console.intake_page, methods=["GET"]),
        Route("/intake/enroll", console.intake_enroll, methods=["POST"]),
        Route("/intake/verify", console.intake_verify, methods=["POST"]),
        Route("/oversight", console.oversight),
        Route("/oversight.csv", console.oversight_csv),
        Route("/image/probe/{search_id}/{index:int}", console.probe_image),
        Route("/image/template/{gallery}/{subject_id}/{template_id:int}", console.template_image),
        Route("/image/subject/{gallery}/{subject_id}", console.subject_image),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.console = console
    return SecurityHeaders(app)


def run(args: argparse.Namespace) -> None:
    """``shanakht console``: serve until Ctrl-C."""
    import uvicorn

    secret = Path(args.secret_file).read_bytes().strip() if args.secret_file else os.urandom(32)
    config = ConsoleConfig(server=args.server, idle_timeout_s=args.idle_timeout_s, secure_cookies=bool(args.tls_cert),
                           secret=secret, server_tls_ca=args.server_tls_ca)
    app = create_app(config)
    scheme = "https" if args.tls_cert else "http"
    uvicorn_config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                    ssl_certfile=args.tls_cert or None, ssl_keyfile=args.tls_key or None)
    server = uvicorn.Server(uvicorn_config)

    async def announce() -> None:
        import asyncio

        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"shanakht console on {scheme}://{args.host}:{port} (server {args.server})", flush=True)

    async def main() -> None:
        import asyncio

        await asyncio.gather(server.serve(), announce())

    import asyncio

    asyncio.run(main())


__all__ = ["create_app", "run", "ConsoleConfig", "Console"]
