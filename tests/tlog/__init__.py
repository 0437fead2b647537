"""Tests of holdca.tlog: hashing, tiles, notes, entries, publication, Go verifiers."""
