"""The local stack: moto's server, the functions' workers and their schedule on one machine.

The `lambdaface local` command is `command.py`; `stack.py` runs the stack; `process.py` launches it
as a child process (tests, benchmarks, the demo)."""
