"""Statistics of real networks: empirical NTK and friends."""
