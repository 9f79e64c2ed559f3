"""Where a client command's AWS calls go: the endpoint and region its arguments name."""
from __future__ import annotations

import argparse
import os


def configure(args: argparse.Namespace) -> None:
    """Point shared.aws's clients where the arguments say (endpoint, region); exit 2 without a bucket."""
    if not args.bucket:
        raise SystemExit("lambdaface: no bucket: pass --bucket or set LAMBDAFACE_BUCKET")
    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    if args.region:
        os.environ["AWS_DEFAULT_REGION"] = args.region
