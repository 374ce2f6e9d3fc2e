"""After the search: the best trial's model, its refit, the greedy ensemble, the export, and
`automl predict`. Nothing here imports the agent; it is called with what it needs."""
