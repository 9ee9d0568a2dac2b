"""Dataset loaders and format detection. Arrives with its own issue."""
