"""The built-in audits, installed with the package: ``pytest --pyargs pytest_metatrace.audits``."""
