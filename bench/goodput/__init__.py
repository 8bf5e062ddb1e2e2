"""Goodput of spot training (``make bench-goodput``, bench/GOODPUT_RESULTS.md).

- ``trace``: spot capacity traces in SkyPilot's public JSON format, read and validated.
- ``generate``: seeded synthetic traces (preemption rate, uptimes, outages, zones).
- ``calculator``: first-order goodput from measured costs and a trace (pure functions).
- ``replay``: a trace played through the real operator and trainer on the local cluster.
"""
