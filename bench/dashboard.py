"""Benchmark: the dashboard's and the public status page's pages at 10,000 nodes and a year of ledger.

    .venv/bin/python bench/dashboard.py [--nodes 10000] [--days 365] [--requests 50] [--sites 1] [--quick]

A state store as a year of operation leaves it (bench/webdata.py: sweeps every minute, 300 ledger rows a
day, findings, incidents with their timelines, maintenances, 90 days of probes and smoke results, status
posts; cached under the temp directory, keyed by version and parameters) and a synthetic 10,000-node
snapshot per site are served the way the agent serves them: `WebState` -> `create_app` -> `Server` on a free
127.0.0.1 port, in this process. The bench logs in as an operator (Store.add_user, POST /login with the login
form's CSRF token), then one keep-alive httpx client GETs every page in turn, round after round after a
warm-up, `--requests` times each; the baseline is GET /healthz of the same server in the same rounds (the
cheapest answer it gives), printed as each page's p95 / baseline p95. A page answering 404 is not built yet
("missing"), a redirect to /login means the login is not there yet ("no login"); either is skipped, not
failed. After the timed rounds one more request per page counts its SQL statements and their time
(SQLAlchemy engine events), and each page over TARGET_MS at p95 is profiled over PROFILE_REQUESTS more (a
sampling profiler over the server's threads: cProfile would see only the thread it runs in).

Prints a table, writes bench/results/dashboard.json, and exits 1 if a page answered anything else than 200,
404 or the login redirect. Not a test: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import webdata  # bench/ is the script directory
from common import finish
from rich.console import Console
from rich.table import Table
from sqlalchemy import event, func, select

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Settings, Site
from hammersmith.quantify.exporter import Exporter
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.react import hammers
from hammersmith.store import Store, open_store
from hammersmith.store.models import Action, IncidentEvent
from hammersmith.web.app import Server, create_app
from hammersmith.web.state import WebState

RESULTS = Path(__file__).resolve().parent / "results" / "dashboard.json"
CACHE = Path(tempfile.gettempdir()) / "hammersmith-bench-dashboard"
TARGET_MS = 200.0
SITES = ("lab", "edge")
USER, PASSWORD = "bench-operator", "bench-operator-password-0123"
VIEWERS = ("alice", "bob")
WARMUP = 3
PROFILE_LINES = 14
PROFILE_REQUESTS = 10
PROFILE_GAP = 0.6
#: a sampled stack with a frame of these is serving a page (the others idle in the loop or the pool)
PROFILED = ("hammersmith/web/", "hammersmith/store/", "hammersmith/react/")
#: the frames that are the database itself (SQLite runs inside do_execute; rows are converted in fetch*)
SQL_FRAMES = ("sqlalchemy/engine/default.py:do_execute", "sqlalchemy/engine/cursor.py:fetch")
HAMMER = "error-resetter"
#: the text of a link to the next page of a list
PAGER = re.compile(r"2|next\b.*|older\b.*|[›»→]|.*\b(next|older)", re.I)


@dataclass
class Page:
    """One URL's figures; seconds are wall time of a whole GET (headers and body read) on a warm connection."""

    label: str
    path: str
    status: str = "ok"
    code: int | None = None
    seconds: list[float] = field(default_factory=list)
    bytes: int = 0
    content_type: str = ""
    #: per request, averaged over PROFILE_REQUESTS
    queries: float | None = None
    sql_ms: float | None = None
    slowest_sql: str | None = None
    slowest_sql_ms: float | None = None
    slowest_plan: list[str] = field(default_factory=list)
    profile: str | None = None

    def ms(self, q: float) -> float:
        """The q-quantile in ms (inclusive method: with 50 samples p99 is close to the maximum)."""
        cuts = statistics.quantiles(self.seconds, n=100, method="inclusive")
        return 1000 * (statistics.median(self.seconds) if q == 0.5 else cuts[round(q * 100) - 1])

    def to_json(self, baseline_p95: float | None) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "seconds"}
        if len(self.seconds) >= 2:
            out |= {f"p{round(q * 100)}_ms": round(self.ms(q), 2) for q in (0.5, 0.95, 0.99)}
            out["max_ms"] = round(1000 * max(self.seconds), 2)
            out["ratio_p95"] = round(self.ms(0.95) / baseline_p95, 1) if baseline_p95 else None
            out["seconds"] = [round(s, 5) for s in self.seconds]
        return out


class Forms(HTMLParser):
    """The <input>, <select> names and <a href>s of a page: how the login form and the ledger's filters and
    pager are actually called, rather than guessed."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str]] = []
        self.links: list[tuple[str, dict[str, str]]] = []
        self._link: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag in ("input", "select") and values.get("name"):
            self.inputs.append({"tag": tag, **values})
        elif tag == "a" and values.get("href"):
            self._link = values
            self.links.append(("", values))

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            href, attrs = self.links[-1]
            self.links[-1] = (href + data, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._link = None


def parsed(html: str) -> Forms:
    forms = Forms()
    forms.feed(html)
    return forms


def settings(directory: Path, store_url: str, sites: list[str]) -> Settings:
    return Settings(state_dir=directory, store_url=store_url, sites={s: Site(cloud=s) for s in sites})


def ensure_users(store: Store) -> str | None:
    """The bench's operator and two viewers, added once per cached store; a note when there is no add_user."""
    if not hasattr(store, "add_user"):
        return "Store.add_user does not exist yet: the login pages were skipped"
    for name, role in ((USER, "operator"), *((v, "viewer") for v in VIEWERS)):
        if store.user(name) is None:
            store.add_user(name, PASSWORD, role)
    return None


def login(http: httpx.Client) -> str | None:
    """POST /login with the form's own hidden fields (the CSRF token); a note saying why when it did not work."""
    form = http.get("/login")
    if form.status_code == 404:
        return "GET /login is 404: the login pages were skipped"
    fields: dict[str, str] = {}
    for item in parsed(form.text).inputs:
        kind, name = item.get("type", "text"), item["name"]
        if kind == "hidden":
            fields[name] = item.get("value", "")
        elif kind == "password":
            fields[name] = PASSWORD
        elif kind in ("text", "email", ""):
            fields[name] = USER
    answer = http.post("/login", data=fields)
    if answer.status_code not in (200, 302, 303) or "hammersmith_session" not in http.cookies:
        return f"POST /login answered {answer.status_code} without a session cookie (fields {sorted(fields)})"
    return None


def ledger_nodes(store: Store, site: str) -> tuple[tuple[str, str, int], str]:
    """The node with the most ledger rows (the heaviest node page) and one with a single row (filtering the
    ledger by it finds almost nothing, so whatever is not indexed is read to the end)."""
    count = func.count()
    query = select(Action.node_name, Action.node_uuid, count).where(Action.site == site)
    query = query.group_by(Action.node_uuid, Action.node_name)
    with store.session() as session:
        name, node_uuid, rows = session.execute(query.order_by(count.desc()).limit(1)).one()
        quiet = session.execute(query.having(count == 1).limit(1)).first()
    return (name, node_uuid, rows), quiet[0] if quiet else name


def idle_hammer(store: Store) -> str:
    """A registered hammer without a ledger row: a filter that matches nothing."""
    with store.session() as session:
        used = set(session.scalars(select(Action.hammer).distinct()))
    return next((h for h in sorted(hammers.load()) if h not in used), HAMMER)


def hot_incident(store: Store) -> int:
    """The incident with the longest timeline."""
    query = select(IncidentEvent.incident_id).group_by(IncidentEvent.incident_id).order_by(func.count().desc())
    with store.session() as session:
        return int(session.scalars(query.limit(1)).one())


def ledger_urls(http: httpx.Client, node: str, quiet: str, idle: str) -> tuple[list[tuple[str, str]], str | None]:
    """The ledger filtered by hammer and by node, and its page 2, with the parameter names its own filter form
    and pager use (`hammer`, `node`, `page=2` when the page does not say); a note on what was guessed."""
    page = http.get("/ledger")
    names = {"hammer": "hammer", "node": "node"}
    second = "/ledger?page=2"
    guessed = []
    if page.status_code == 200:
        html = parsed(page.text)
        inputs = [i["name"] for i in html.inputs]
        for key in names:
            names[key] = next((n for n in inputs if key in n.lower()), names[key])
            if names[key] not in inputs:
                guessed.append(f"{key}={names[key]}")
        pager = [
            href
            for text, attrs in html.links
            if (href := attrs["href"]).startswith("/ledger?")
            and ("next" in attrs.get("rel", "") or PAGER.fullmatch(text.strip()))
        ]
        if pager:
            second = pager[0]
        else:
            guessed.append(second)
    urls = [
        ("ledger, by hammer", f"/ledger?{urlencode({names['hammer']: HAMMER})}"),
        ("ledger, idle hammer", f"/ledger?{urlencode({names['hammer']: idle})}"),
        ("ledger, by node", f"/ledger?{urlencode({names['node']: node})}"),
        ("ledger, by a 1-row node", f"/ledger?{urlencode({names['node']: quiet})}"),
        ("ledger, page 2", second),
    ]
    note = f"ledger: not found on the page, so guessed: {', '.join(guessed)}" if guessed else None
    return urls, note


@dataclass
class Statement:
    """One SQL statement a page ran, with its time and parameters (to ask SQLite for its plan afterwards)."""

    seconds: float
    sql: str
    params: Any


@contextmanager
def sql_counter(store: Store) -> Iterator[list[Statement]]:
    """Every statement the engine runs inside the block, with its time: what a page costs in the database."""
    timings: list[Statement] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        timings.append(Statement(time.perf_counter() - conn.info["bench_started"].pop(), statement, params))

    event.listen(store.engine, "before_cursor_execute", before)
    event.listen(store.engine, "after_cursor_execute", after)
    try:
        yield timings
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
        event.remove(store.engine, "after_cursor_execute", after)


def plan(store: Store, statement: Statement) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of a statement: SCAN (every row) or SEARCH ... USING INDEX, and temp B-trees."""
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement.sql, statement.params).all()
    return [str(row[-1]) for row in rows]


@dataclass
class Samples:
    """Where a page's time goes, whichever thread serves it: milliseconds per function, inclusive and on top."""

    busy_ms: float = 0.0
    inclusive: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)

    def text(self, requests: int) -> str:
        def rows(counts: Counter[str], keep: Callable[[str], bool]) -> list[str]:
            shown = [(w, ms) for w, ms in counts.most_common() if keep(w)][:PROFILE_LINES]
            return [f"{ms / requests:8.1f} ms {100 * ms / self.busy_ms:5.1f} %  {w}" for w, ms in shown]

        mine = rows(self.inclusive, lambda w: w.startswith(PROFILED) or ".html:" in w or w.startswith(SQL_FRAMES))
        head = f"per request ({requests} sampled), {self.busy_ms / requests:.1f} ms busy; inclusive:"
        return "\n".join([head, *mine, "on top (self):", *rows(self.own, lambda w: True)])


def _where(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    short = path.split("site-packages/")[-1].split("/src/")[-1]
    return f"{short}:{frame.f_code.co_name}"


@contextmanager
def sampled(interval: float = 0.0005) -> Iterator[Samples]:
    """A sampling profiler over every other thread (cProfile sees only its own, and the page runs in the
    server's loop or its thread pool): a stack counts when it holds a frame of PROFILED code, i.e. is serving.
    Each sample weighs the time since the previous one: a thread running Python holds the GIL and delays the
    sampler, so counting samples alone would over-weigh SQLite, which releases it."""
    samples, stop, me = Samples(), threading.Event(), threading.get_ident()
    switch = sys.getswitchinterval()

    def run() -> None:
        mine, last = threading.get_ident(), time.perf_counter()
        while not stop.wait(interval):
            now = time.perf_counter()
            weight, last = 1000 * (now - last), now
            for ident, frame in sys._current_frames().items():
                if ident in (me, mine):
                    continue
                stack: list[str] = []
                walk: FrameType | None = frame
                while walk is not None:
                    stack.append(_where(walk))
                    walk = walk.f_back
                if not any(s.startswith(PROFILED) for s in stack):
                    continue
                samples.busy_ms += weight
                samples.own[stack[0]] += weight
                for where in set(stack):
                    samples.inclusive[where] += weight

    sys.setswitchinterval(interval)  # the sampler gets the GIL back sooner
    sampler = threading.Thread(target=run, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()
        sys.setswitchinterval(switch)


@dataclass
class Pauses:
    """The garbage collector's pauses while the pages were timed, per generation: with a 10,000-node snapshot
    in memory a full collection walks every dict of it, and stops every thread while it does."""

    count: Counter[int] = field(default_factory=Counter)
    ms: Counter[int] = field(default_factory=Counter)
    longest_ms: dict[int, float] = field(default_factory=dict)

    def text(self) -> str:
        return ", ".join(
            f"gen{g}: {self.count[g]} x, {self.ms[g]:.0f} ms in all, longest {self.longest_ms[g]:.1f} ms"
            for g in sorted(self.count)
        )


@contextmanager
def gc_pauses() -> Iterator[Pauses]:
    pauses, started = Pauses(), [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        generation, ms = info["generation"], 1000 * (time.perf_counter() - started[0])
        pauses.count[generation] += 1
        pauses.ms[generation] += ms
        pauses.longest_ms[generation] = max(ms, pauses.longest_ms.get(generation, 0.0))

    gc.callbacks.append(callback)
    try:
        yield pauses
    finally:
        gc.callbacks.remove(callback)


def classify(page: Page, response: httpx.Response) -> None:
    """404: not built yet; a redirect to /login: the login is not there (or refused us); else anything not 200
    is a failure."""
    page.code = response.status_code
    location = response.headers.get("location", "")
    if response.status_code == 404:
        page.status = "missing"
    elif response.status_code in (302, 303, 307) and urlsplit(location).path == "/login":
        page.status = "no login"
    elif response.status_code != 200:
        page.status = f"HTTP {response.status_code}"
    else:
        page.bytes = len(response.content)
        page.content_type = response.headers.get("content-type", "").split(";")[0]


def measure(
    http: httpx.Client, pages: list[Page], requests: int, console: Console, progress: Callable[[int], None]
) -> None:
    """Warm-up, then `requests` rounds over every page that answered 200 (interleaved: a busy moment of the
    shared machine hits every page alike, the baseline too)."""
    for page in pages:
        for _ in range(WARMUP):
            try:
                classify(page, http.get(page.path))
            except httpx.HTTPError as exc:  # a handler that raised: uvicorn drops the connection
                page.status = f"{type(exc).__name__}: {exc}"
            if page.status != "ok":
                break
    live = [p for p in pages if p.status == "ok"]
    for done in range(requests):
        for page in live:
            started = time.perf_counter()
            try:
                code = http.get(page.path).status_code
            except httpx.HTTPError as exc:
                code, page.status = 0, f"{type(exc).__name__} in round {done + 1}: {exc}"
            page.seconds.append(time.perf_counter() - started)
            if code not in (0, 200):
                page.status = f"HTTP {code} in round {done + 1}"
        live = [p for p in live if p.status == "ok"]
        progress(done + 1)
    for page in pages:
        if page.status not in ("ok", "missing", "no login"):
            console.print(f"[red]{page.label} {page.path}: {page.status}[/red]")


def explain(
    store: Store, http: httpx.Client, pages: list[Page], profile_all: bool, requests: int = PROFILE_REQUESTS
) -> None:
    """`requests` more per page counting its SQL, with the plan of its slowest statement; the pages over half the
    target at p95 (all with `profile_all`) also sampled. They are spaced PROFILE_GAP apart, so a page
    that caches its answer for a few seconds (the status page) shows its misses too, in their share."""
    for page in pages:
        if page.status != "ok":
            continue
        profile = profile_all or (len(page.seconds) >= 2 and page.ms(0.95) > TARGET_MS / 2)
        with sql_counter(store) as timings, sampled() if profile else nullcontext(Samples()) as samples:
            for _ in range(requests):
                http.get(page.path)
                time.sleep(PROFILE_GAP)
        page.queries = round(len(timings) / requests, 1)
        page.sql_ms = round(1000 * sum(t.seconds for t in timings) / requests, 2)
        if timings:
            slowest = max(timings, key=lambda t: t.seconds)
            page.slowest_sql, page.slowest_sql_ms = " ".join(slowest.sql.split()), round(1000 * slowest.seconds, 2)
            page.slowest_plan = plan(store, slowest)
        if profile:
            page.profile = samples.text(requests)


def report(pages: list[Page], baseline: Page, console: Console, title: str) -> None:
    table = Table(title=title)
    for column in ("page", "path", "p50 ms", "p95 ms", "p99 ms", "p95/base", "KiB", "SQL", "SQL ms", ""):
        table.add_column(column, justify="left" if column in ("page", "path", "") else "right", overflow="fold")
    base = baseline.ms(0.95)
    for page in [baseline, *pages]:
        if page.status != "ok" or len(page.seconds) < 2:
            table.add_row(page.label, page.path, *["-"] * 7, f"[yellow]{page.status}[/yellow]")
            continue
        p95 = page.ms(0.95)
        flag = f"[red]over {TARGET_MS:.0f} ms[/red]" if p95 > TARGET_MS else ""
        table.add_row(
            page.label,
            page.path,
            f"{page.ms(0.5):.1f}",
            f"{p95:.1f}",
            f"{page.ms(0.99):.1f}",
            f"{p95 / base:.0f}" if page is not baseline else "1",
            f"{page.bytes / 1024:.1f}",
            "-" if page.queries is None else f"{page.queries:g}",
            "-" if page.sql_ms is None else f"{page.sql_ms:.1f}",
            flag,
        )
    console.print(table)


def serve(
    args: argparse.Namespace, url: str, store: Store, site: str, notes: list[str], console: Console, baseline: Page
) -> tuple[list[Page], Pauses]:
    """Log in, find the URLs worth timing (the worst node, the ledger's filters and pager), time them all, then
    explain them; the pages and the collector's pauses during the timed rounds."""
    with httpx.Client(base_url=url, follow_redirects=False, timeout=120.0) as http:
        if not notes and (note := login(http)):
            notes.append(note)
        (name, node_uuid, rows), quiet = ledger_nodes(store, site)
        ledger, note = ledger_urls(http, name, quiet, idle_hammer(store))
        if note:
            notes.append(note)
        pages = [
            Page("overview", "/"),
            Page(f"node ({rows} ledger rows)", f"/nodes/{site}/{name}"),
            Page("node by UUID", f"/nodes/{site}/{node_uuid}"),
            Page("ledger", "/ledger"),
            *(Page(label, path) for label, path in ledger),
            Page("incidents", "/incidents"),
            Page("incident", f"/incidents/{hot_incident(store)}"),
            Page("maintenance", "/maintenance"),
            Page("toil", "/toil"),
            Page("status", "/status"),
            Page("status.json", "/status.json"),
            Page("status.atom", "/status.atom"),
        ]
        if args.gc_freeze:
            gc.collect()
            gc.freeze()  # what the agent could do after each snapshot: full collections skip it
        with console.status("measuring") as status, gc_pauses() as pauses:
            progress = lambda done: status.update(f"round {done}/{args.requests}")  # noqa: E731
            measure(http, [baseline, *pages], args.requests, console, progress)
        explain(store, http, pages, args.profile_all, 2 if args.quick else PROFILE_REQUESTS)
    return pages, pauses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000, help="nodes per site")
    parser.add_argument("--days", type=int, default=365, help="days of history in the store")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page, after a warm-up")
    parser.add_argument("--sites", type=int, default=1, choices=range(1, len(SITES) + 1), help="sites, each alike")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached store even if it is current")
    parser.add_argument("--profile-all", action="store_true", help="profile every page, not only the slow ones")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() once the snapshots are made")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 nodes, 14 days, 10 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.days, args.requests = 1000, 14, 10
    args.requests = max(2, args.requests)  # a quantile needs two
    console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the whole table
    sites = list(SITES[: args.sites])
    started, load = datetime.now(UTC), os.getloadavg()
    built = webdata.build(CACHE, sites, args.nodes, args.days, fresh=args.fresh)
    how = "reused" if built.reused else f"built in {built.seconds} s"
    size_mb = built.path.stat().st_size / 1e6
    console.log(f"store {built.path} ({size_mb:.0f} MB, {how}): {built.counts}")
    notes: list[str] = []
    problems: list[str] = []
    store_url = f"sqlite:///{built.path}"
    store = open_store(store_url)
    server: Server | None = None
    pages: list[Page] = []
    baseline = Page("baseline", "/healthz")
    pauses = Pauses()
    latest: dict[str, Snapshot] = {}
    try:
        t0 = time.perf_counter()
        latest = {s: webdata.snapshot(webdata.fleet(s, args.nodes), datetime.now(UTC)) for s in sites}
        console.log(f"snapshots of {args.nodes} nodes per site made in {time.perf_counter() - t0:.1f} s")
        if note := ensure_users(store):
            notes.append(note)
        with tempfile.TemporaryDirectory(prefix="hammersmith-bench-dashboard-") as tmp:
            config = settings(Path(tmp), store_url, sites)
            app = create_app(
                Exporter(Telemetry(sites), collectors={}, prime=False),
                settings=config,
                web=WebState(config, store, latest=latest),
            )
            server = Server(app, "127.0.0.1", 0).start()
            console.log(f"serving on {server.url}")
            pages, pauses = serve(args, server.url, store, sites[0], notes, console, baseline)
    finally:
        if server is not None:
            server.stop()
        store.close()
    title = (
        f"dashboard pages, {args.sites} site(s) x {args.nodes} nodes, {args.days} days of history, "
        f"{args.requests} requests each (ms, whole GET on a warm connection)"
    )
    report(pages, baseline, console, title)
    for page in pages:
        if page.profile:
            console.rule(f"{page.label} {page.path}")
            console.print(f"slowest statement, {page.slowest_sql_ms} ms:", page.slowest_sql or "(none)", markup=False)
            console.print("its plan:", "; ".join(page.slowest_plan) or "-", markup=False)
            console.print(page.profile, markup=False, highlight=False)
    console.print(f"garbage collections during the timed rounds: {pauses.text() or 'none'}")
    base = baseline.ms(0.95) if len(baseline.seconds) >= 2 else None
    slow = [p for p in pages if p.status == "ok" and p.ms(0.95) > TARGET_MS]
    missing = [p.path for p in pages if p.status in ("missing", "no login")]
    if slow:
        notes.append("over 200 ms p95: " + ", ".join(f"{p.path} {p.ms(0.95):.0f} ms" for p in slow))
    if missing:
        notes.append("not measured (missing or no login): " + ", ".join(missing))
    problems += [f"{p.path}: {p.status}" for p in pages if p.status not in ("ok", "missing", "no login")]
    run = {
        "started_at": started.isoformat(),
        "loadavg_at_start": load,
        "nodes": args.nodes,
        "days": args.days,
        "sites": sites,
        "requests": args.requests,
        "target_ms": TARGET_MS,
        "store": {"path": str(built.path), "mb": round(size_mb), "rows": built.counts, "data_ends": built.now},
        "snapshot": {k: len(v) for k, v in latest[sites[0]].data.items() if v is not None},
    }
    out = {
        "gc_freeze": args.gc_freeze,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "gc_pauses": {
            f"gen{g}": [pauses.count[g], round(pauses.ms[g], 1), round(pauses.longest_ms[g], 1)] for g in pauses.count
        },
        "baseline": baseline.to_json(None),
        "pages": [p.to_json(base) for p in pages],
        "notes": notes,
        "problems": problems,
    }
    return finish(console, RESULTS, run, out)


if __name__ == "__main__":
    sys.exit(main())
