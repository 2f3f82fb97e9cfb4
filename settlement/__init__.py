"""Nightly settlement, reconciliation and statements."""
