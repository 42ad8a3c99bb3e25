"""The projector process: the events topic folded into the PostgreSQL read models.

`consumer.Projector` is the loop (rows and positions in one transaction); beside it, by role:
`batches` (decode, apply, find poison), `offsets` (the stored positions), `dead_letters`
(records skipped, sent with why) and `outage` (a database outage told in two lines). The
builders are the `projections` package; `__main__` is the composition root.
"""
