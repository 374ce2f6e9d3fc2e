"""Reporting: observers of a live run (TensorBoard, console) and the report built from the store."""
