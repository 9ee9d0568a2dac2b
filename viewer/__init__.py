"""The viser-based web viewer. Arrives with its own issue."""
