"""Stage: sampling."""
