"""The projector process: the events topic folded into the PostgreSQL read models.

`consumer.Projector` is the loop (rows and positions in one transaction); the builders are
the `projections` package; `__main__` is the composition root.
"""
