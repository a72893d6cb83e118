"""Load tests: locust scenarios against a real broker (``make load``); never collected by pytest."""
