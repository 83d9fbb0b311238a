"""Live runs (`kubemu up`): a cluster that stays up for kubectl, client libraries and ad hoc commands."""
