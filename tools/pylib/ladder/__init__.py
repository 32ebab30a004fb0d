"""Python side of Server Ladder: start a step binary, talk to it, read /proc.

Shared by the demos (tools/demo), the test suite (tests/steps) and the bench.
"""
