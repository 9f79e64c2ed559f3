"""Scheduled functions on the local stack (UnknownsSweepFunction's `rate(1 hour)`): read from the
template, run once before the stack says it is ready, then at `--schedule-interval`, each run a
process of its own with the function's environment and a Scheduled Event; a run that raises, dies
or outlives its timeout is one line and the stack goes on; stopping waits for a run in progress.
Template parameters: `--parameter NAME=VALUE`, `--remember-unknowns`, `--unknown-retention-days`.

The stack here runs support/scheduled_handler.py in place of the sweep (and the scripted SQS
handler in place of the others): what is tested is the scheduling, not the sweep."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, TESTS
from support.stack import SCHEDULED_HANDLER, SCRIPTED_HANDLER, StackClients, StackProcess, stack_fixture
from support.waits import wait_until

from lambdaface.local.command import add_parameter_args, parameters
from lambdaface.local import lines as stack_lines
from lambdaface.local.process import clean_env
from lambdaface.local.spec import ScheduledSpec, TemplateError, rate_seconds, stack_spec
from lambdaface.local.workers import scheduled_event
from lambdaface.template import load_template

SWEEP = "UnknownsSweepFunction"
INTERVAL_S = 2
TIMEOUT_S = 4


def scripted(directory: Path) -> Path:
    """The project's template, the sweep running support/scheduled_handler.py (the only scheduled
    function left on) and the SQS functions support/scripted_handler.py."""
    template = load_template()
    for lid, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["Handler"] = SCHEDULED_HANDLER if lid == SWEEP else SCRIPTED_HANDLER
            for event in resource["Properties"].get("Events", {}).values():
                if lid != SWEEP and event["Type"] == "Schedule":  # the other scheduled functions (ReconcileFunction) stay off
                    event["Properties"]["Enabled"] = False
    path = directory / "template.json"  # JSON is YAML: load_template reads it
    path.write_text(json.dumps(template))
    return path


def prepare(directory: Path) -> list[str]:
    (directory / "runs").mkdir()
    return ["--template", str(scripted(directory)), "--handler-env", f"SCHEDULED_DIR={directory / 'runs'}"]


stack = stack_fixture(
    "schedule", "--schedule-interval", str(INTERVAL_S), "--function-timeout", str(TIMEOUT_S),
    "--remember-unknowns", "--unknown-retention-days", "7", "--parameter", "UnknownThreshold=0.5",
    workers=1, env={"PYTHONPATH": str(TESTS)}, prepare=prepare,
)


def runs_dir(stack: StackProcess) -> Path:
    return stack.state_dir.parent / "runs"


def runs(stack: StackProcess) -> list[dict[str, Any]]:
    """The runs that returned, from support/scheduled_handler.py's runs.jsonl."""
    path = runs_dir(stack) / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def scheduled_lines(stack: StackProcess) -> list[re.Match[str]]:
    return [m for m in map(stack_lines.SCHEDULED.match, list(stack.lines)) if m]


def marked(stack: StackProcess) -> int:
    """Items the scheduled handler wrote to the unknowns table (one per run that reached it)."""
    return len(StackClients(stack).scan("lambdaface-UnknownsTable"))


def line_after(stack: StackProcess, index: int, pattern: str, timeout: float = 60.0) -> re.Match[str]:
    """The first scheduled-run line after stdout line `index` that matches `pattern`."""
    regex = re.compile(pattern)

    def find() -> re.Match[str] | None:
        for line in list(stack.lines)[index + 1:]:
            match = stack_lines.SCHEDULED.match(line)
            if match and regex.search(line):
                return match
        return None

    return wait_until(f"a line matching {pattern!r}", find, timeout)


# --- the template, read ----------------------------------------------------------------------


def test_the_sweep_is_read_as_a_scheduled_function(template: dict[str, Any]) -> None:
    spec = stack_spec(template, bucket="photos")
    assert SWEEP not in spec.functions and set(spec.functions) == {"EnrollFunction", "RecognizeFunction", "VideoFunction"}
    sweep = spec.scheduled[SWEEP]
    assert (sweep.handler, sweep.rate_s, sweep.timeout_s, sweep.memory_mb) == ("handlers.unknowns_sweep.handler", 3600, 900, 3008)
    assert sweep.environment["UNKNOWNS_TABLE"] == spec.tables["UnknownsTable"].name == "lambdaface-UnknownsTable"
    assert sweep.environment["LAMBDAFACE_BUCKET"] == "photos"
    assert sweep.environment["LAMBDAFACE_REMEMBER_UNKNOWNS"] == "false"
    assert spec.tables["UnknownsTable"].ttl_attribute == "expires_at"
    for fn in spec.functions.values():  # every function knows the unknowns table and the settings
        assert fn.environment["UNKNOWNS_TABLE"] == "lambdaface-UnknownsTable"
        assert fn.environment["LAMBDAFACE_UNKNOWN_RETENTION_DAYS"] == "30"


@pytest.mark.parametrize(("expression", "seconds"), [
    ("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(1 hour)", 3600), ("rate(2 hours)", 7200),
    ("rate(1 day)", 86400), ("rate(3 days)", 259200), (" rate( 10 minutes ) ", 600),
])
def test_rate_expressions(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0 * * * ? *)", "rate(0 minutes)", "rate(1 week)", "rate(minutes)", ""])
def test_other_schedules_are_refused(expression: str) -> None:
    with pytest.raises(TemplateError, match="rate"):
        rate_seconds(expression)


def _with_events(template: dict[str, Any], events: dict[str, Any]) -> dict[str, Any]:
    changed = json.loads(json.dumps(template))
    changed["Resources"][SWEEP]["Properties"]["Events"] = events
    return changed


def test_schedule_variants(template: dict[str, Any]) -> None:
    every_5 = {"Every": {"Type": "ScheduleV2", "Properties": {"ScheduleExpression": "rate(5 minutes)",
                                                               "Input": '{"say": "hi"}'}}}
    sweep = stack_spec(_with_events(template, every_5)).scheduled[SWEEP]
    assert sweep.rate_s == 300 and sweep.rule == "lambdaface-UnknownsSweepFunctionEvery"
    assert scheduled_event(sweep, "us-east-1") == {"say": "hi"}  # the schedule's Input replaces the event
    disabled = {"Off": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)", "Enabled": False}}}
    assert SWEEP not in stack_spec(_with_events(template, disabled)).scheduled
    with pytest.raises(TemplateError, match="cron"):
        stack_spec(_with_events(template, {"Nightly": {"Type": "Schedule", "Properties": {"Schedule": "cron(0 3 * * ? *)"}}}))
    mixed = {"Hourly": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}},
             "Queue": {"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": ["EnrollQueue", "Arn"]}}}}
    with pytest.raises(TemplateError, match="one SQS event source or only Schedule events"):
        stack_spec(_with_events(template, mixed))


def test_the_scheduled_event_is_eventbridges() -> None:
    sweep = ScheduledSpec("Sweep", "lambdaface-Sweep", "m.handler", 3600, rule="lambdaface-SweepHourly")
    event = scheduled_event(sweep, "eu-west-1")
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert (event["detail-type"], event["source"], event["region"], event["detail"]) == \
        ("Scheduled Event", "aws.events", "eu-west-1", {})
    assert event["resources"] == ["arn:aws:events:eu-west-1:123456789012:rule/lambdaface-SweepHourly"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    assert scheduled_event(sweep, "eu-west-1")["id"] != event["id"]


def test_parameters_override_the_defaults(template: dict[str, Any]) -> None:
    spec = stack_spec(template, parameters={"RememberUnknowns": "true", "UnknownRetentionDays": "7",
                                            "UnknownThreshold": "0.5", "Threshold": "0.4"})
    for fn in [*spec.functions.values(), *spec.scheduled.values()]:
        assert fn.environment["LAMBDAFACE_REMEMBER_UNKNOWNS"] == "true"
        assert fn.environment["LAMBDAFACE_UNKNOWN_RETENTION_DAYS"] == "7"
        assert fn.environment["LAMBDAFACE_UNKNOWN_THRESHOLD"] == "0.5"
        assert fn.environment["LAMBDAFACE_THRESHOLD"] == "0.4"
    assert stack_spec(template, parameters={"EnrollTimeout": "30"}).functions["EnrollFunction"].timeout_s == 30


@pytest.mark.parametrize(("name", "value", "message"), [
    ("NoSuchParameter", "1", "no parameter 'NoSuchParameter'"),
    ("RememberUnknowns", "yes", "not one of true, false"),
    ("UnknownRetentionDays", "0", "below its MinValue 1"),
    ("UnknownRetentionDays", "3651", "above its MaxValue 3650"),
    ("UnknownRetentionDays", "a week", "not a number"),
    ("UnknownThreshold", "high", "does not match"),
])
def test_parameters_the_template_would_refuse_are_refused(template: dict[str, Any], name: str, value: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        stack_spec(template, parameters={name: value})


def test_the_shortcuts_set_the_parameters() -> None:
    parser = argparse.ArgumentParser()
    add_parameter_args(parser)
    assert parameters(parser.parse_args([])) == {}
    args = parser.parse_args(["--parameter", "UnknownThreshold=0.5", "--parameter", "RememberUnknowns=false",
                              "--remember-unknowns", "--unknown-retention-days", "7"])
    assert parameters(args) == {"UnknownThreshold": "0.5", "RememberUnknowns": "true", "UnknownRetentionDays": "7"}


def test_an_unknown_parameter_stops_lambdaface_local(tmp_path: Path) -> None:
    for option, message in ((["--parameter", "NoSuchParameter=1"], "no parameter 'NoSuchParameter' in the template"),
                            (["--unknown-retention-days", "0"], "UnknownRetentionDays=0: below its MinValue 1")):
        done = subprocess.run([sys.executable, "-m", "lambdaface.cli", "local", "--port", "0", "--state-dir",
                               str(tmp_path / "state"), *option], cwd=ROOT, env=clean_env(), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert message in done.stderr and "ready" not in done.stdout


# --- the stack runs it -------------------------------------------------------------------------


def test_the_first_run_is_done_before_the_stack_is_ready(stack: StackProcess) -> None:
    lines = list(stack.lines)
    ready = next(i for i, line in enumerate(lines) if stack_lines.READY.match(line))
    first = [stack_lines.SCHEDULED.match(line) for line in lines[:ready]]
    assert [(m["function"], m["run"], m["outcome"]) for m in first if m] == [(SWEEP, "1", "succeeded")], lines
    # what the run did is in the stack's state when the stack says it is ready
    (item, *_) = sorted(StackClients(stack).scan("lambdaface-UnknownsTable"), key=lambda i: i["image_key"])
    assert item["person"] == "#scheduled"
    assert f"{runs(stack)[0]['started']:.6f}" == item["image_key"]


def test_a_run_gets_the_functions_environment_and_a_scheduled_event(stack: StackProcess) -> None:
    first = runs(stack)[0]
    assert first["env"] == {
        "UNKNOWNS_TABLE": "lambdaface-UnknownsTable",
        "LAMBDAFACE_REMEMBER_UNKNOWNS": "true",  # --remember-unknowns
        "LAMBDAFACE_UNKNOWN_RETENTION_DAYS": "7",  # --unknown-retention-days 7
        "LAMBDAFACE_UNKNOWN_THRESHOLD": "0.5",  # --parameter UnknownThreshold=0.5
        "LAMBDAFACE_BUCKET": stack.bucket,
        "JOBS_TABLE": "lambdaface-JobsTable",
        "AWS_ENDPOINT_URL": stack.endpoint,
        "AWS_LAMBDA_FUNCTION_NAME": "lambdaface-UnknownsSweepFunction",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "SCHEDULED_TAG": None,
    }
    assert first["function_name"] == "lambdaface-UnknownsSweepFunction"
    event = first["event"]
    assert (event["detail-type"], event["source"], event["detail"]) == ("Scheduled Event", "aws.events", {})
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/lambdaface-UnknownsSweepFunctionHourly"]
    # the context counts down from the function's timeout (--function-timeout)
    assert 0 < first["later_remaining_ms"] <= first["remaining_ms"] <= TIMEOUT_S * 1000


def test_it_runs_again_at_the_interval(stack: StackProcess) -> None:
    stack.wait_for_line(rf"^{SWEEP} scheduled run 4: succeeded \(\d+\.\d s\)$", timeout=120)
    done = wait_until("4 runs recorded", lambda: runs(stack) if len(runs(stack)) >= 4 else None)
    starts = [run["started"] for run in done[:4]]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # a run starts INTERVAL_S after the previous one started (give or take its process's start)
    assert all(0.5 * INTERVAL_S <= gap <= INTERVAL_S + 30 for gap in gaps), gaps
    assert len({run["pid"] for run in done}) == len(done), "each run is a process of its own"
    numbers = [int(m["run"]) for m in scheduled_lines(stack)]
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize(("marker", "why"), [("raise", r"RuntimeError: asked to raise"), ("exit", r"exited with 3")])
def test_a_failing_run_is_one_line_and_the_stack_goes_on(stack: StackProcess, marker: str, why: str) -> None:
    start = len(stack.lines) - 1
    (runs_dir(stack) / marker).touch()
    try:
        failed = line_after(stack, start, rf": failed \(\d+\.\d s\): {why}$")
    finally:
        (runs_dir(stack) / marker).unlink()
    index = stack.lines.index(failed.string)
    later = line_after(stack, index, r": succeeded ")
    assert int(later["run"]) > int(failed["run"])
    assert stack.process.poll() is None
    # the workers go on too
    key = f"models/x/ok-{len(stack.lines)}.jpg"  # "ok": the scripted handler succeeds
    stack.client("s3").put_object(Bucket=stack.bucket, Key=key, Body=b"x")
    stack.wait_for_line(rf"^EnrollFunction {key}: no result \(\d+\.\d s\)$")


def test_a_run_past_its_timeout_is_killed(stack: StackProcess) -> None:
    start = len(stack.lines) - 1
    (runs_dir(stack) / "slow").touch()
    try:
        killed = line_after(stack, start, rf": failed \(\d+\.\d s\): timed out after {TIMEOUT_S} s$")
    finally:
        (runs_dir(stack) / "slow").unlink()
    assert TIMEOUT_S <= float(killed["seconds"]) < TIMEOUT_S + 10
    line_after(stack, stack.lines.index(killed.string), r": succeeded ")


def test_invoke_runs_a_scheduled_function_with_a_scheduled_event(stack: StackProcess, tmp_path: Path) -> None:
    template = scripted(tmp_path)
    env = clean_env({"PYTHONPATH": str(TESTS), "SCHEDULED_DIR": str(tmp_path), "SCHEDULED_TAG": "invoke"})
    command = [sys.executable, "-m", "lambdaface.cli", "invoke", "--template", str(template),
               "--endpoint-url", stack.endpoint, "--bucket", stack.bucket]
    done = subprocess.run([*command, "unknownssweep", "--unknown-retention-days", "9"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == {"swept": True}
    (run,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert run["event"]["detail-type"] == "Scheduled Event"
    assert run["env"]["SCHEDULED_TAG"] == "invoke" and run["env"]["LAMBDAFACE_BUCKET"] == stack.bucket
    assert run["env"]["LAMBDAFACE_UNKNOWN_RETENTION_DAYS"] == "9"
    assert run["env"]["LAMBDAFACE_REMEMBER_UNKNOWNS"] == "false"  # the template's default: no option given
    assert 0 < run["remaining_ms"] <= 900_000  # the template's Timeout
    # an SQS function still needs its event
    done = subprocess.run([*command, "EnrollFunction"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "EnrollFunction needs an event" in done.stderr


def test_stopping_waits_for_a_run_in_progress(stack: StackProcess) -> None:
    """Last in this module: it stops the stack."""
    (runs_dir(stack) / "sleep").write_text("3")
    start = len(stack.lines) - 1
    line_after(stack, start, r": succeeded \([3-9]\.\d s\)$")  # the runs sleep now
    before = marked(stack)
    wait_until("a run to start", lambda: marked(stack) > before, timeout=60, every=0.1)
    returned = len(runs(stack))
    assert stack.stop() == 0, stack.stderr()[-3000:]
    # the run in progress finished: it returned, and its line is the last one
    assert len(runs(stack)) == returned + 1
    last = scheduled_lines(stack)[-1]
    assert last["outcome"] == "succeeded" and float(last["seconds"]) >= 3
    assert "timed out" not in stack.stderr()
