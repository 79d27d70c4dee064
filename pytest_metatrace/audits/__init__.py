"""The built-in audits, run with ``pytest --pyargs pytest_metatrace.audits``."""
