"""Per component: invariants, the lockstep machine, the mutant zoo."""
