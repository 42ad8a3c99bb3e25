"""The query and command API: FastAPI over the Postgres read models and the commands topic.

Reads come only from the read models; writes validate, publish one command and answer 202.
`app.create_app` builds the app from its dependencies; `__main__` is the composition root.
"""
