"""What survives a restart: the journal of sequenced commands, snapshots, recovery."""
