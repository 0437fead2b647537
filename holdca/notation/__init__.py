"""holdca/notation (in progress)."""

__all__: list[str] = []
