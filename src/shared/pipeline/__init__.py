"""The pipeline's use cases and their job runners: enroll, forget and recognize images
(`images`, `runner`), recognize videos (`video`), SQS delivery rules (`delivery`), result
documents (`results`) and the bucket's key layout (`keys`).

This package imports nothing, so that `keys` can be used without the engine or AWS.
"""
