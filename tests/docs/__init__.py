"""Tests of the documentation: its samples run, its commands match the binaries."""
