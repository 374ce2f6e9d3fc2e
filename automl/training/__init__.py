"""Training: device choice, metrics and the trial trainer (knows nothing of strategies)."""
