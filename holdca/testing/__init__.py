"""holdca/testing (in progress)."""

__all__: list[str] = []
