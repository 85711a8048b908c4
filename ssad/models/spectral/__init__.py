"""The spectral-statistics detector: each clip's per-band log-mel mean and std, scored per machine ID."""
