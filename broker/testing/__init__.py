"""Test support for people testing against a broker: live brokers on free loopback ports.

What belongs here: helpers a test suite (ours, or a user's through the pytest plugin,
``pytest_plugin.py``) needs to run a real broker — in a thread or as its own process — and to wait
on it. It may import the server and the client; nothing in the product imports it.
"""
