"""Money-safety suites: load, faults, hostile input, cookie policy, reverse proxies.

A package (``safety.test_*``) so that its module names never collide with
tests elsewhere in the tree.
"""
