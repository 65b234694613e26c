"""Stage: coils."""
