"""Helpers for the cross-service tests: process control and raw wire clients."""
