"""meshspec: the engine (registry, clock, lockstep machines, traces, CLI, report, bench)."""
