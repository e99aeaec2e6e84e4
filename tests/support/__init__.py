"""Test-only helpers: synthetic image folders and IDX files, fault injection into artifacts.

They live with the tests rather than in ``bench``/``converters``: no product code uses them.
"""
