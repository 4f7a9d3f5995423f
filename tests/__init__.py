"""Test package: makes ``tests.fixture_loader`` importable from every test."""
