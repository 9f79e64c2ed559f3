"""Adapters for the AWS services the pipeline uses: S3, SQS-delivered S3 events, DynamoDB."""
