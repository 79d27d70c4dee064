"""The sensitivity audit: the smallest processing step an encoder detects (issue 19)."""
