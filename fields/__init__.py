"""Hash-grid neural fields (Instant-NGP style) in Warp. Arrives with its own issue."""
