"""Example diffsde plugins, one module per component kind, each its own entry point.

Every module uses only diffsde's public API and is what the README's contract of its kind
points to; ``tests/test_examples.py`` loads each through its installed entry point and checks
it against theory.
"""
