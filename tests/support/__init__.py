"""Shared test harness: brokers, worlds, ceremonies (imported by tests, never collected)."""
