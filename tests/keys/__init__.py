"""Tests of holdca.keys: encodings, adapter, backends and their shared contract."""
