"""The built-in audits, installed with the package: one folder per audit.

Each folder holds everything about its audit: ``spec.py`` (the
:class:`~pytest_metatrace.spec.AuditSpec`: gate keys with kinds, ranges,
defaults and reasons; options; provenance; data; report sections), the
analysis and its typed results, the report section and its template, and the
test module that runs it. The plugin finds the folders by their ``spec.py``
(:func:`pytest_metatrace.spec.builtin_specs`): a new built-in audit is a new
folder.

Run them on the defaults from any folder with ``pytest --pyargs
pytest_metatrace.audits`` (add ``--metatrace-encoder=...`` and the other
options as usual). ``python -m pytest_metatrace copy-audits DIR`` copies the
test modules into a repository to edit. The repository's top-level
``audits/`` holds one-line shims that import these modules, so there is one
source per audit.
"""
