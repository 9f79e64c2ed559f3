"""lambdaface's shared code: the pure face engine and the AWS adapters used by the handlers."""
