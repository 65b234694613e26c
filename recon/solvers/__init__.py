"""Stage: solvers."""
