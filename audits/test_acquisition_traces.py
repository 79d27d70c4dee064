"""Acquisition traces (paper Sec. 3.2, Table 2, Figs. 5-7): see the package module."""

from pytest_metatrace.audits.test_acquisition_traces import *  # noqa: F403
