"""The `carebridge` command for ops people: events, replay, dead letters, offsets, projections."""
