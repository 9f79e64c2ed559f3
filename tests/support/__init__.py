"""What the tests share, one module per concern (import the module you need; this file stays
light, because the local stack imports `support.scripted_handler` in its worker processes):

    aws               boto3 clients aimed at moto or a local stack, and the reads tests repeat
    moto              moto's server in this process, and fresh resources (bucket, tables) per test
    faults            FaultProxy: an HTTP proxy in front of moto that fails the requests a test picks
    lambda_events     SQS and S3 event shapes, a Lambda context, delivery the way Lambda does it
    stack             `lambdaface local` for tests (lambdaface.local.process.StackProcess)
    cli               the `lambdaface` command line as a real process
    waits             the one wait: poll until something is true, bounded
    images, video     test inputs made from the sample photos
    template          reading template.yaml's roles and intrinsic functions
    scripted_handler  a handler with failures on demand, run by the stack's workers
    scheduled_handler a scheduled handler with failures on demand, run by the stack's schedule

Fixtures live in tests/conftest.py.
"""
from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
