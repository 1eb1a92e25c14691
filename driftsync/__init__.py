"""driftsync: the `drift` command dispatcher and distribution metadata."""
