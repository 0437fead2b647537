"""holdca/pki (in progress)."""

__all__: list[str] = []
