"""Trainers, losses and densification strategies. Arrives with its own issue."""
