"""The local stack: moto's server on loopback, the template's resources, worker processes.

    stack = LocalStack(spec, Options(port=4566))
    stack.start()        # server, resources, restored state, notifications, workers, first scheduled runs
    stack.run()          # prints a line per finished job until SIGINT/SIGTERM; runs the schedules
    stack.stop()         # finishes in-flight jobs and scheduled runs, saves the state, stops the server

A scheduled function (every event a `rate(...)` Schedule, spec.ScheduledSpec) runs once in
start(), after the resources exist and while the workers start, and start() returns when that run
has finished; then every `schedule_interval` seconds (default: the template's rate), one run at a
time, each in a new process (workers.run_scheduled) with the environment a worker of it would get.
"""
from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import boto3

from lambdaface.local import expiry, keys, lines, state, workers
from lambdaface.local.api import ApiPool, ApiRouter, ApiWorkerConfig
from lambdaface.local.event_log import EventLog, webhook_refusal
from lambdaface.local.durable import DurableDeletes, SaveBarrier
from lambdaface.local.guard import Guard, is_loopback
from lambdaface.local.keys import Keys
from lambdaface.local.spec import FunctionSpec, ScheduledSpec, StackSpec, UrlFunctionSpec, local_url
from shared.config import BUCKET_ENV

CREDENTIALS = keys.DUMMY.boto()  # loopback mode: the stack's own clients (any keys do there)
WILDCARDS = ("0.0.0.0", "::", "")


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 4566
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    state_dir: Path = Path(".lambdaface")
    visibility_timeout: int | None = None  # overrides every queue's (tests)
    function_timeout: int | None = None  # overrides every function's Timeout (tests)
    autosave_s: float = 60.0  # 0: save on clean stop only
    log_to_stderr: bool = False  # handler logs on stderr instead of <state_dir>/logs/
    handler_env: dict[str, str] = field(default_factory=dict)  # tests: set last in every function's environment
    schedule_interval: float | None = None  # seconds between a scheduled function's runs (None: its rate; 0: at start only)
    allow_remote: bool = False  # remote mode: any --host, every request signed with the stack's keys
    keys_file: Path | None = None  # remote mode: the keys (else the environment, the state folder, new ones)
    host_names: tuple[str, ...] = ()  # more names clients reach the stack by (Host headers it answers)
    webhook: str | None = None  # a loopback URL each job's event is POSTed to (event_log.py)
    api_workers: int | None = None  # worker processes of each URL function (the synchronous API); None: `workers`


@dataclass
class _Slot:
    index: int
    config: workers.WorkerConfig
    busy: Any  # multiprocessing.Value("d"): time.time() when the current batch started, else 0
    process: Any = None
    started: float = 0.0
    quick_deaths: int = 0  # consecutive deaths soon after start (e.g. the handler fails to import)
    respawn_at: float = 0.0
    reports: Any = None  # our end of the worker's report pipe (a new pipe per process)


# A run of a scheduled function that has not called its handler after this long is killed (the
# import of the handler: Lambda's init phase, generous for a cold 2-core machine).
SCHEDULED_INIT_S = 120.0


@dataclass
class _Schedule:
    """A scheduled function: its current run (a process) and when the next one starts."""

    function: ScheduledSpec
    interval_s: float  # 0: only the run at start
    runs: int = 0
    next_at: float = 0.0
    process: Any = None  # the current run, None between runs
    reports: Any = None  # our end of its report pipe
    busy: Any = None  # multiprocessing.Value("d"): time.time() when the handler was called, else 0
    started: float = 0.0
    report: dict[str, Any] | None = None


def url_host(host: str) -> str:
    """`host` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def check_host(host: str, allow_remote: bool) -> str | None:
    """Why `--host HOST` is refused (None: it is not): a non-loopback address needs remote mode."""
    if allow_remote or _resolves_to_loopback(host):
        return None
    return (f"--host {host} is not a loopback address: the stack would serve every photo, embedding and "
            "result to anyone who can reach it. Pass --allow-remote as well to listen there with every "
            "request signed by the stack's keys (see docs/SECURITY.md)")


def _resolves_to_loopback(host: str) -> bool:
    if is_loopback(host):
        return True
    if host.strip("[]") in WILDCARDS:
        return False
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host.strip("[]"), None)}
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(is_loopback(a) for a in found)


def function_env(function: FunctionSpec | ScheduledSpec | UrlFunctionSpec, endpoint: str, region: str,
                 credentials: Keys = keys.DUMMY) -> dict[str, str]:
    """A function's environment: the template's variables, then the endpoint and credentials.
    LAMBDAFACE_* variables set in our own environment override the template's (not the bucket's
    name: the stack's bucket is the one its functions use)."""
    env = {k: local_url(v, endpoint) for k, v in function.environment.items()}
    env.update({k: v for k, v in os.environ.items() if k.startswith("LAMBDAFACE_") and k in env and k != BUCKET_ENV})
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            **credentials.env(),
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
        }
    )
    return env


FIRST_RUN_WAIT_S = 10.0  # how long the ready line waits for the scheduled functions' first runs


class OneDynamoDBRequestAtATime:
    """WSGI middleware: DynamoDB requests run one at a time. moto serves each request in a thread and
    its DynamoDB is not atomic across them: two conditional writes (or transactions) can both pass
    their condition, and a transaction's rollback copy can fail while another request writes. DynamoDB
    itself applies each request atomically; the gallery's gapless change counter relies on it.
    S3 and SQS requests still run in parallel."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB"):
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))  # the whole response, inside the lock


def _serve(host: str, port: int, wrap: Any) -> Any:
    """Bind moto's WSGI app behind `wrap(app)` (raises at once if the port is taken) and serve it in a thread."""
    from moto.moto_server import werkzeug_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    handler = getattr(werkzeug_app, "MotoRequestHandler", None)
    extra = {"request_handler": handler} if handler else {}
    app = wrap(OneDynamoDBRequestAtATime(werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app)))
    server = make_server(host.strip("[]"), port, app, threaded=True, **extra)
    threading.Thread(target=server.serve_forever, args=(0.1,), name="moto", daemon=True).start()
    return server


class LocalStack:
    """One local copy of the stack declared by template.yaml."""

    def __init__(self, spec: StackSpec, options: Options, out: TextIO | None = None):
        self.spec = spec
        self.options = options
        self.out = out or sys.stdout
        self.server: Any = None
        self.endpoint = ""
        self.slots: list[_Slot] = []
        self.schedules: list[_Schedule] = []
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = self._ctx.Event()
        self._signals = 0
        self._lock_file: Any = None
        self._clients: dict[str, Any] = {}
        self.keys: Keys = keys.DUMMY  # remote mode: the stack's own (start() reads or makes them)
        self._save_lock = threading.Lock()
        self.event_log: EventLog | None = None
        self.api_routers: list[ApiRouter] = []  # the synchronous API's (local/api.py): one per URL function
        self.api_pools: list[ApiPool] = []

    # --- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Serve, create the resources, restore the saved state, start the workers."""
        why = check_host(self.options.host, self.options.allow_remote) or (
            webhook_refusal(self.options.webhook) if self.options.webhook else None)
        if why:
            raise ValueError(why)
        state_dir = self.options.state_dir
        os.umask(0o077)  # everything the stack and its workers write: the owner's only
        state_dir.mkdir(parents=True, exist_ok=True)
        state.restrict(state_dir)
        self._lock_file = open(state_dir / ".lock", "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"lambdaface local: {state_dir} is in use by another local stack") from None
        if self.options.allow_remote:
            self.keys, source = keys.resolve(state_dir, self.options.keys_file, os.environ)
            self._announce_keys(source)
        self.server = _serve(self.options.host, self.options.port, self._wrap)
        host = self.options.host.strip("[]")
        if host in WILDCARDS:  # the workers and the ready line use loopback
            host = "::1" if ":" in host else "127.0.0.1"
        self.endpoint = f"http://{url_host(host)}:{self.server.server_port}"
        s3, sqs, dynamodb = (self.client(s) for s in ("s3", "sqs", "dynamodb"))
        urls = self._create_queues(sqs)
        self._create_tables(dynamodb)
        self._create_bucket(s3)
        objects = state.restore_objects(state_dir, self.spec, s3)
        items, messages = state.restore_items_and_messages(state_dir, self.spec, sqs, dynamodb)
        if objects or items or messages:
            self.log(f"restored {objects} objects, {items} items, {messages} messages from {state_dir}")
        self.event_log = EventLog(state_dir, sqs, self.client("events"), self.options.webhook, self.log)
        self.event_log.start()
        self.expire()
        self._put_notifications(s3)
        self._start_workers(urls)
        self._start_api()
        self._start_schedules()

    def _wrap(self, app: Any) -> Any:
        """moto's app behind the stack's middlewares: the guard, then durable deletes."""
        names = {self.options.host.strip("[]").lower(), *(n.lower() for n in self.options.host_names)}
        if self.options.host.strip("[]") in WILDCARDS:  # the machine's own names too
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        durable = DurableDeletes(app, SaveBarrier(self.save))
        inner: Any = durable
        for _ in self.spec.url_functions.values():  # the API's paths go to its workers, behind the guard
            inner = ApiRouter(inner)
            self.api_routers.append(inner)
        return Guard(inner, names - {""}, self.spec.bucket, self.keys if self.options.allow_remote else None)

    def _announce_keys(self, source: str) -> None:
        path = self.options.state_dir / keys.KEYS_FILE
        if source == "generated":  # printed this once; later starts read them from the file
            self.log(f"remote access: every request must be signed with these keys, kept in {path} (0600):\n"
                     f"  AWS_ACCESS_KEY_ID={self.keys.access_key_id}\n"
                     f"  AWS_SECRET_ACCESS_KEY={self.keys.secret_access_key}\n"
                     f"  (or AWS_SHARED_CREDENTIALS_FILE={path})")
        else:
            where = {"file": str(self.options.keys_file), "environment": f"${keys.ACCESS_KEY_ENV}",
                     "state": str(path)}[source]
            self.log(f"remote access: every request must be signed with the keys of {where} "
                     f"(access key {self.keys.access_key_id})")

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = boto3.client(
                service, endpoint_url=self.endpoint, region_name=self.spec.region, **self.keys.boto()
            )
        return self._clients[service]

    def _create_queues(self, sqs: Any) -> dict[str, str]:
        urls: dict[str, str] = {}
        # dead-letter queues first: a redrive policy names an existing queue
        for q in sorted(self.spec.queues.values(), key=lambda q: q.dlq is not None):
            attributes = dict(q.attributes)
            if self.options.visibility_timeout is not None:
                attributes["VisibilityTimeout"] = str(self.options.visibility_timeout)
            if q.dlq:
                attributes["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": self.spec.queue_arn(q.dlq), "maxReceiveCount": q.max_receive_count}
                )
            urls[q.logical_id] = sqs.create_queue(QueueName=q.name, Attributes=attributes)["QueueUrl"]
        return urls

    def _create_tables(self, dynamodb: Any) -> None:
        for t in self.spec.tables.values():
            dynamodb.create_table(TableName=t.name, **t.properties)
            if t.ttl_attribute:
                dynamodb.update_time_to_live(
                    TableName=t.name, TimeToLiveSpecification={"AttributeName": t.ttl_attribute, "Enabled": True}
                )

    def _create_bucket(self, s3: Any) -> None:
        extra = {}
        if self.spec.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.spec.region}
        s3.create_bucket(Bucket=self.spec.bucket, **extra)
        rules = [{"ID": r.rule_id, "Status": "Enabled", "Filter": {"Prefix": r.prefix}, "Expiration": {"Days": r.days}}
                 for r in self.spec.expiry]
        if rules:  # what the bucket says; expire() applies them
            s3.put_bucket_lifecycle_configuration(Bucket=self.spec.bucket, LifecycleConfiguration={"Rules": rules})

    def _put_notifications(self, s3: Any) -> None:
        rules = []
        for n in self.spec.notifications:
            rule: dict[str, Any] = {"QueueArn": self.spec.queue_arn(n.queue), "Events": list(n.events)}
            filters = [{"Name": k, "Value": v} for k, v in (("prefix", n.prefix), ("suffix", n.suffix)) if v]
            if filters:
                rule["Filter"] = {"Key": {"FilterRules": filters}}
            rules.append(rule)
        s3.put_bucket_notification_configuration(
            Bucket=self.spec.bucket, NotificationConfiguration={"QueueConfigurations": rules}
        )

    def worker_env(self, function: FunctionSpec | ScheduledSpec) -> dict[str, str]:
        # handler_env comes last: e.g. AWS_ENDPOINT_URL of a fault-injecting proxy (the workers
        # themselves still poll the stack's server directly)
        return {**function_env(function, self.endpoint, self.spec.region, self.keys), **self.options.handler_env}

    def _start_workers(self, urls: dict[str, str]) -> None:
        functions = list(self.spec.functions.values())
        if self.options.function_timeout is not None:
            functions = [replace(f, timeout_s=self.options.function_timeout) for f in functions]
        # N workers per function, as Lambda's event source runs up to MaximumConcurrency per
        # function; 0 means none (messages wait; see `lambdaface invoke`)
        count = self.options.workers * len(functions)
        logs = self.options.state_dir / "logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        for i in range(count):
            fn = functions[i % len(functions)]
            config = workers.WorkerConfig(
                function=fn,
                queue_url=urls[fn.queue],
                queue_arn=self.spec.queue_arn(fn.queue),
                endpoint=self.endpoint,
                region=self.spec.region,
                env=self.worker_env(fn),
                log_path=None if self.options.log_to_stderr else str(logs / f"{fn.logical_id}.log"),
            )
            slot = _Slot(i, config, self._ctx.Value("d", 0.0))
            self._spawn(slot)
            self.slots.append(slot)

    def _spawn(self, slot: _Slot) -> None:
        slot.busy.value = 0.0
        slot.started = time.monotonic()
        self._drain(slot)  # what the previous process reported before it died is still printed
        # A pipe per process: a worker killed mid-write can only spoil its own pipe.
        slot.reports, writer = self._ctx.Pipe(duplex=False)
        slot.process = self._ctx.Process(
            target=workers.run,
            args=(slot.config, slot.busy, writer, self._stop),
            name=f"lambdaface-{slot.config.function.logical_id}-{slot.index}",
            daemon=False,
        )
        slot.process.start()
        writer.close()  # the worker holds the only write end: its death reads as EOF
        self.log(lines.worker_started(slot.index, slot.config.function.logical_id, slot.process.pid))

    def _start_api(self) -> None:
        """The synchronous API's workers (each URL function's), then its routers take requests."""
        count = self.options.workers if self.options.api_workers is None else self.options.api_workers
        logs = self.options.state_dir / "logs"
        for router, fn in zip(self.api_routers, self.spec.url_functions.values()):
            if self.options.function_timeout is not None:
                fn = replace(fn, timeout_s=self.options.function_timeout)
            if count < 1:
                router.why = "this local stack runs no API worker (--api-workers 0)"
                continue  # the API answers 503
            config = ApiWorkerConfig(fn, self.spec.region, {**function_env(fn, self.endpoint, self.spec.region, self.keys),
                                                            **self.options.handler_env},
                                     None if self.options.log_to_stderr else str(logs / f"{fn.logical_id}.log"))
            pool = ApiPool(self._ctx, config, count, self.log)
            self.api_pools.append(pool)
            router.pool = pool
        if self.api_pools:
            self.log(f"synchronous API: POST {self.endpoint}/recognize, POST {self.endpoint}/compare "
                     f"({count} worker{'s' if count != 1 else ''})")

    # --- scheduled functions ---------------------------------------------------------------

    def _start_schedules(self) -> None:
        """Run each scheduled function once, now, and wait until every such run has finished, or
        FIRST_RUN_WAIT_S (a run that cannot reach AWS yet, e.g. behind a test's proxy that gets its
        target only once the stack is ready, must not hold the ready line: it goes on, and its line
        comes when it ends)."""
        for fn in self.spec.scheduled.values():
            if self.options.function_timeout is not None:
                fn = replace(fn, timeout_s=self.options.function_timeout)
            interval = fn.rate_s if self.options.schedule_interval is None else self.options.schedule_interval
            schedule = _Schedule(fn, float(interval))
            self.schedules.append(schedule)
            self.log(f"{fn.logical_id} runs now, then " + (f"every {interval:g} s" if interval else "never again"))
            self._start_run(schedule)
        until = time.monotonic() + FIRST_RUN_WAIT_S
        while any(s.process is not None for s in self.schedules):
            if time.monotonic() > until:
                self.log("a scheduled function's first run is still going; the stack is ready meanwhile")
                break
            self._wait_for_runs(0.2)
            for schedule in self.schedules:
                if schedule.process is not None:
                    self._check_run(schedule, time.monotonic())

    def _start_run(self, schedule: _Schedule) -> None:
        fn = schedule.function
        schedule.runs += 1
        logs = self.options.state_dir / "logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        config = workers.ScheduledConfig(
            function=fn,
            region=self.spec.region,
            run=schedule.runs,
            env=self.worker_env(fn),
            log_path=None if self.options.log_to_stderr else str(logs / f"{fn.logical_id}.log"),
        )
        schedule.busy = self._ctx.Value("d", 0.0)
        schedule.reports, writer = self._ctx.Pipe(duplex=False)
        schedule.report = None
        schedule.process = self._ctx.Process(
            target=workers.run_scheduled,
            args=(config, schedule.busy, writer),
            name=f"lambdaface-{fn.logical_id}-run-{schedule.runs}",
            daemon=False,
        )
        schedule.started = time.monotonic()
        schedule.next_at = schedule.started + schedule.interval_s if schedule.interval_s else float("inf")
        schedule.process.start()
        writer.close()

    def _wait_for_runs(self, timeout: float) -> None:
        """Wait up to `timeout` for a running scheduled function to report or exit."""
        waits = [w for s in self.schedules if s.process is not None for w in (s.process.sentinel, s.reports) if w is not None]
        if waits:
            multiprocessing.connection.wait(waits, timeout)

    def _check_runs(self) -> None:
        """Collect finished runs (one line each), kill the ones past their timeout, start due ones."""
        now = time.monotonic()
        for schedule in self.schedules:
            if schedule.process is not None:
                self._check_run(schedule, now)
            if schedule.process is None and not self._stop.is_set() and now >= schedule.next_at:
                self._start_run(schedule)

    def _check_run(self, schedule: _Schedule, now: float) -> None:
        fn, process = schedule.function, schedule.process
        self._read_run_report(schedule)
        busy = schedule.busy.value
        why = None
        if process.is_alive():
            if busy and time.time() - busy > fn.timeout_s + 1:
                why = f"timed out after {fn.timeout_s} s"  # Lambda's timeout
            elif not busy and schedule.report is None and now - schedule.started > SCHEDULED_INIT_S:
                why = f"not started after {SCHEDULED_INIT_S:.0f} s"
            else:
                return
            process.kill()
        process.join()
        self._read_run_report(schedule)
        report = schedule.report
        if why is None and report is None:
            why = f"exited with {process.exitcode}"
        if report is not None and why is None:
            ok, seconds, why = report["ok"], report["seconds"], report["error"]
        else:  # killed, or gone without a word (os._exit, a signal): from the handler's call if it was made
            ok, seconds = False, time.time() - busy if busy else now - schedule.started
        print(lines.scheduled_run(fn.logical_id, schedule.runs, ok, seconds, why), file=self.out, flush=True)
        if schedule.reports is not None:
            schedule.reports.close()
        schedule.process, schedule.reports, schedule.report = None, None, None

    def _read_run_report(self, schedule: _Schedule) -> None:
        pipe = schedule.reports
        if pipe is None:
            return
        try:
            while pipe.poll():
                schedule.report = pipe.recv()
        except (EOFError, OSError):  # the run is over (its process closed the pipe)
            pipe.close()
            schedule.reports = None

    # --- run -------------------------------------------------------------------------------

    def run(self) -> None:
        """Print job lines, replace dead workers, kill timed-out ones, autosave; until a signal."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        print(lines.ready(self.endpoint, self.spec.bucket), file=self.out, flush=True)
        next_save = time.monotonic() + self.options.autosave_s
        while not self._stop.is_set():
            self._print_reports(timeout=0.2)
            self._supervise()
            self._check_runs()
            if self.options.autosave_s and time.monotonic() >= next_save:
                self.expire()
                self.save()
                next_save = time.monotonic() + self.options.autosave_s

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals += 1
        self._stop.set()
        if self._signals > 1:  # a second Ctrl-C: do not wait for in-flight jobs or scheduled runs
            for slot in self.slots:
                if slot.process is not None and slot.process.is_alive():
                    slot.process.kill()
            for schedule in self.schedules:
                if schedule.process is not None and schedule.process.is_alive():
                    schedule.process.kill()

    def _supervise(self) -> None:
        for slot in self.slots:
            fn = slot.config.function
            busy = slot.busy.value
            if slot.process.is_alive() and busy and time.time() - busy > fn.timeout_s + 1:
                slot.process.kill()  # Lambda's timeout: the batch comes back after the visibility timeout
                slot.process.join()
                self.log(f"worker {slot.index} ({fn.logical_id}) timed out after {fn.timeout_s} s")
            if slot.process.is_alive() or self._stop.is_set():
                continue
            now = time.monotonic()
            if not slot.respawn_at:  # just found dead: back off if it keeps dying at once
                slot.quick_deaths = slot.quick_deaths + 1 if now - slot.started < 10 else 0
                slot.respawn_at = now + min(30.0, 0.5 * 2 ** slot.quick_deaths) if slot.quick_deaths else now
                self.log(
                    f"worker {slot.index} ({fn.logical_id}) exited with {slot.process.exitcode}, starting another"
                )
            if now >= slot.respawn_at:
                slot.respawn_at = 0.0
                self._spawn(slot)

    def _print_reports(self, timeout: float) -> None:
        """Print what the workers reported, waiting up to `timeout` for the first report."""
        pipes = {slot.reports: slot for slot in self.slots if slot.reports is not None}
        for pipe in multiprocessing.connection.wait(list(pipes), timeout):
            try:
                while pipe.poll():
                    for line in self.report_lines(pipe.recv()):
                        print(line, file=self.out, flush=True)
            except (EOFError, OSError):  # the worker is gone; its next process gets a new pipe
                pipes[pipe].reports = None
                pipe.close()

    def _drain(self, slot: _Slot) -> None:
        """Print every report left in a dead worker's pipe, then close it."""
        pipe, slot.reports = slot.reports, None
        if pipe is None:
            return
        try:
            while pipe.poll():
                for line in self.report_lines(pipe.recv()):
                    print(line, file=self.out, flush=True)
        except (EOFError, OSError):
            pass
        pipe.close()

    def report_lines(self, report: dict[str, Any]) -> list[str]:
        """One line per job of a processed message."""
        fn = self.spec.functions[report["function"]]
        most = self.spec.queues[fn.queue].max_receive_count
        printed = []
        for key, outcome in report["jobs"]:
            if report["ok"]:
                again = f", attempt {report['attempt']}" if report["attempt"] > 1 else ""
                printed.append(f"{fn.logical_id} {key}: {outcome} ({report['seconds']:.1f} s{again})")
                continue
            attempt = report["attempt"]
            then = "goes to the dead-letter queue" if most and attempt >= most else "will be retried"
            why = f": {report['error']}" if report["error"] else ""
            printed.append(f"{fn.logical_id} {key}: attempt {attempt} failed, {then}{why}")
        return printed

    def log(self, text: str) -> None:
        print(f"lambdaface local: {text}", file=sys.stderr, flush=True)

    # --- stop ------------------------------------------------------------------------------

    def save(self) -> dict[str, int]:
        """Save the whole state (one save at a time: autosave, a delete's save, the stop's)."""
        with self._save_lock:
            return state.save(self.options.state_dir, self.spec, self.client("s3"), self.client("dynamodb"))

    def expire(self) -> None:
        """Apply the bucket's lifecycle expirations and the tables' TTL (AWS does it by itself)."""
        try:
            done = expiry.expire(self.spec, self.client("s3"), self.client("dynamodb"), time.time())
        except Exception as exc:  # the stack goes on; the next autosave tries again
            self.log(f"expiry failed: {exc}")
            return
        if done["objects"] or done["items"]:
            self.log(f"expired {done['objects']} objects and {done['items']} items")
        if self.event_log is not None:
            self.event_log.expire(time.time())

    def stop(self) -> None:
        """Stop taking messages, let the workers finish their batch, save, stop the server."""
        self._stop.set()
        for slot in self.slots:  # idle workers leave at once, busy ones after their batch
            if slot.process is not None and slot.process.is_alive():
                slot.process.terminate()
        for slot in self.slots:
            if slot.process is None:
                continue
            deadline = time.monotonic() + slot.config.function.timeout_s + 5
            while slot.process.is_alive() and time.monotonic() < deadline:
                self._print_reports(timeout=0.2)
            if slot.process.is_alive():
                slot.process.kill()
            slot.process.join()
        self._print_reports(timeout=0.0)
        for router in self.api_routers:
            router.pool, router.why = None, "the local stack is stopping"  # later requests: 503
        for pool in self.api_pools:
            pool.stop()
        # a scheduled run in progress finishes (it ignores SIGTERM), unless past its timeout
        while any(s.process is not None for s in self.schedules):
            self._wait_for_runs(0.2)
            self._check_runs()
        if self.event_log is not None:
            self.event_log.stop()  # the events the last jobs put
        if self.server is not None:
            saved = self.save()
            self.log(
                f"stopped; saved {saved['objects']} objects, {saved['items']} items, "
                f"{saved['messages']} messages to {self.options.state_dir}"
            )
            self.server.shutdown()
        if self._lock_file is not None:
            self._lock_file.close()
